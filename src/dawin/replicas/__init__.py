"""Miniature replicas of the paper suite's upstream sources, in their real upstream form, for a local rehearsal.

``dawin.replicas.data`` writes the dataset replicas; ``dawin.replicas.models`` the checkpoint replicas (OpenAI
releases, model-soups state dicts, WiSE-FT and task_vectors pickles, transformers CLIP directories), each where
the fetch code looks for it.
"""
