"""The paper's tables and figures by target name: the paper's name for each and what it shows.

Plain data with no imports, so the Snakefile can read it without the package's dependencies.
"""

CATALOG: dict[str, tuple[str, str]] = {
    "table1": ("Table 1", "Oracles: domain-wise coefficient by grid search on each test set, sample-wise coefficient "
                          "from the cross-entropy ratio (both use test labels)."),
    "table2": ("Table 2", "Accuracy, training runs (cost T) and distinct models evaluated per test set (cost I); "
                          "static coefficients chosen on the ID held-out split."),
    "table3": ("Table 3", "Second backbone (ViT-B/16 in the paper); reported-only rows from the paper. WiSE-FT's "
                          "ViT-B/16 (the paper suite's) was fine-tuned on all of ImageNet train, so the ID held-out "
                          "split (ImageNet2p, 2 % of ImageNet train) lies inside its training data: WiSE-FT's alpha, "
                          "the output ensemble's weight, the greedy soup and both temperatures are chosen on images "
                          "the fine-tuned model has seen (backbones.<backbone>.id_val names another split)."),
    "table4": ("Table 4", "Third backbone (ViT-L/14 in the paper); reported-only rows from the paper."),
    "table5": ("Table 5", "Dynamic classifier selection (lower-entropy model), dynamic output ensemble (DaWin's l(x) "
                          "on probabilities) and DaWin."),
    "table_a": ("Table A", "Offset adjustment (Eq. 2) off and on."),
    "table_b": ("Table B", "Beta mixture fitted per batch of test samples, and on all N."),
    "table_c": ("Table C", "Per-sample optimal coefficient (grid 0.05..0.95 minimising the merged model's "
                           "cross-entropy): its std and its MSE to U(0,1), the WiSE-FT constant and the "
                           "cross-entropy ratio."),
    "table_d": ("Table D", "Alternative per-sample coefficients, each through the Beta mixture."),
    "table_e": ("Table E", "DaWin with and without temperature scaling of the expertise models; where the backbone "
                           "has them, with the temperatures naver-ai/dawin hard-codes (dawin_rft/main_dawin.py) "
                           "in place of ours fitted on the ID held-out split."),
    "table_f": ("Table F", "Measured inference cost on ID test samples (runtime extrapolated to the whole ID test "
                           "set) and OOD accuracy. DaWin w/o mixture is exact per sample in batched forward passes "
                           "(what the workflow runs); the loop row gives the same numbers one merge per image, as "
                           "the authors' code, timed on a few images and extrapolated. The rows read the JPEGs, "
                           "as the paper's numbers do; the last two time one model pass through each data path."),
    "table6": ("Table 6", "Multi-task merging: accuracy per task and average; Individuals use each task's own "
                          "expert (an oracle selection); the task-arithmetic grid reports its best lambda on the "
                          "test sets (an upper bound of a search). Fisher merging and RegMean as FusionBench "
                          "computes them (squared gradients of batches of 32 on each split's first 256 images; "
                          "every linear map, attention out_proj included); TIES and AdaMerging++ keep the top 20 % "
                          "of entries counted over what the experts' source files hold (AdaMerging's count)."),
    "table_g": ("Table G", "Model pools of experts only or mixed with non-experts, evaluated on the pool tasks."),
    "fig7": ("Figure 7", "DaWin's mean coefficient of each expert (rows) on each evaluation task (columns)."),
    "fig_g": ("Figure G", "Distances between the tasks' test sets: MMD on the pre-trained CLIP image features and "
                          "FID on Inception-V3 features (when torchvision's weights are present)."),
    "fig1": ("Figure 1", "Histograms of the oracle (cross-entropy ratio) coefficients per domain."),
    "fig2": ("Figure 2", "Entropy ratio vs cross-entropy ratio per correctness split (TT/TF/FT/FF: zero-shot, "
                         "fine-tuned correct), ID and the cartoon/rendition domain, with Pearson r."),
    "fig_c": ("Figure C", "Entropy vs cross-entropy of each model per correctness split, every domain, Pearson r."),
    "fig_d": ("Figure D", "Entropy ratio vs cross-entropy ratio per correctness split, every domain, Pearson r."),
    "fig_e": ("Figure E", "Oracle and entropy-based coefficients per correctness split and domain."),
    "fig4": ("Figure 4", "ID vs OOD-average accuracy: the WiSE-FT sweep, baselines and DaWin."),
    "fig_a": ("Figure A", "Figure 4 with DaWin's mixture coefficients scaled by alpha (DaWin x alpha sweep)."),
    "fig5": ("Figure 5", "Expertise metric: entropy vs pseudo-label losses (ensemble / weight-average pseudo "
                         "labels, soft / hard), ID and OOD accuracy of DaWin."),
    "fig6": ("Figure 6", "Mean output entropy per method and correctness split on the hardest OOD domain."),
    "fig_f": ("Figure F", "Mean output entropy per method and correctness split on every domain."),
    "fig_h": ("Figure H", "Entropy valley: mean entropy over the WiSE-FT grid 0..1 and of dynamic variants."),
    "fig8": ("Figure 8", "Accuracy vs measured wall-clock inference time: robust fine-tuning (OOD average) and, "
                         "when configured, multi-task merging (average over tasks)."),
    "fig_b": ("Figure B", "The bottom-5 and top-5 DaWin coefficient images of every domain."),
}

MULTITASK = frozenset({"table6", "table_g", "fig7", "fig_g"})
"""The multi-task merging targets (built when the config has ``multitask``); the others are robust fine-tuning's."""


def targets(prefix: str, multitask: bool) -> list[str]:
    """The targets whose names start with ``prefix`` ("table", "fig") of one part of the paper, in paper order."""
    return [t for t in CATALOG if t.startswith(prefix) and (t in MULTITASK) == multitask]


def source(name: str) -> str:
    return CATALOG[name][0]


def caption(name: str) -> str:
    return CATALOG[name][1]
