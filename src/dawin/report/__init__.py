"""Results into the paper's tables and figures: tidy results, intervals, reference numbers, plots."""
