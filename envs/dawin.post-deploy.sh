#!/usr/bin/env bash
# Run by Snakemake inside the environment it builds from dawin.yaml (--use-conda): installs the workflow's
# own package `dawin`, which a pip entry of the yaml cannot name (Snakemake builds the environment from a
# copy of the yaml, so a relative path would not resolve). DAWIN_SOURCE is the checkout the Snakefile runs
# from (set by workflow/rules/common.smk, installed editable so code changes take effect); a workflow
# deployed from a remote repository has no checkout: set DAWIN_SOURCE to the release's pip requirement,
# e.g. "dawin @ git+https://<host>/<repository>@<tag>".
set -euo pipefail
if [ -z "${DAWIN_SOURCE:-}" ]; then
    echo "envs/dawin.post-deploy.sh: DAWIN_SOURCE is not set; set it to the pip requirement of the deployed" \
         "release, e.g. DAWIN_SOURCE='dawin @ git+https://<host>/<repository>@<tag>' (README, 'Deploying')" >&2
    exit 1
fi
if [ -d "$DAWIN_SOURCE" ]; then
    python -m pip install --no-deps -e "$DAWIN_SOURCE"
else
    python -m pip install --no-deps "$DAWIN_SOURCE"
fi
