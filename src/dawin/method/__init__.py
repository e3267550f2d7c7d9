"""DaWin's core: expertise, temperature scaling, interpolation coefficients, mixtures, weight algebra."""
