# Decoded images: one job per (dataset directory, preprocessing) writes the dataset's pixels after resize and
# crop as uint8 (dawin.inputs.pixels); logit caching, the WiSE-FT sweep, merged evaluation, the greedy soup,
# the profile and the multi-task jobs read them instead of decoding the JPEGs again (config `images`).


rule decode_images:
    output:
        f"{PIXELS}/{{source}}/{{pixels}}.npy",
    input:
        code=code_of("decode_images.py"),
        data=lambda wc: PIXEL_SOURCES[wc.source],
    params:
        cfg=lambda wc: PIXEL_CFGS[wc.pixels],
        num_workers=config["evaluation"]["num_workers"],
    wildcard_constraints:
        source="|".join(map(re.escape, PIXEL_SOURCES)),
        pixels="|".join(map(re.escape, PIXEL_CFGS)),
    log:
        f"{RESULTS}/logs/decode_images/{{source}}/{{pixels}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/decode_images/{{source}}/{{pixels}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/decode_images.py"
