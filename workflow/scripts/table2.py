import pandas as pd

from dawin.runtime import setup_logging
from dawin.tables import write_table, wide

log = setup_logging(snakemake.log[0])
df = pd.read_csv(snakemake.input.metrics)
methods = ["zeroshot", "finetuned", "output_ensemble", "wise_ft", "dawin_per_sample", "dawin"]
table = wide(df, methods, snakemake.params.datasets)
caption = (f"Table 2 ({df.suite.iloc[0]} suite, backbone {df.backbone.iloc[0]}): top-1 accuracy (%) on the ID test set "
           "and the OOD test sets; static coefficients chosen on the ID held-out split.")
stem = snakemake.output[0].removesuffix(".csv")
write_table(df[df.method.isin(methods)], table, stem, caption)
log.info("\n%s", table.round(2).to_string())
