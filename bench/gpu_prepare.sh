#!/usr/bin/env bash
# Prepares .gpu/ for the GPU check (bench/gpu_check.sh): what it needs on a GPU machine that has a
# PyTorch image but no network and no pricewave install, within the 64 MiB a copy of the working
# tree may carry there (.gpu/ is git-ignored: name it in the copy's carry list).
#
#   .gpu/minilm/      all-MiniLM-L6-v2's config and tokenizer, and its weights in fp16 (43 MB, not 87:
#                     the embedder computes in fp16 on a GPU anyway)
#   .gpu/reviews.txt  the 1,000 held-out real reviews, one per line (the review UDF's input)
#   .gpu/wheels/      pydantic and the three packages it needs, for CPython 3.12, at .venv's versions
#                     (pricewave.config; everything else pricewave's UDF code imports is in the image)
#
# Usage: bash bench/gpu_prepare.sh    (needs .venv: bash deploy/local/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu
rm -rf "$dest"
mkdir -p "$dest/minilm" "$dest/wheels"
.venv/bin/python - "$dest" <<'PY'
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pricewave.data.datasets import load_reviews
from pricewave.reviews.embedding import packaged_model_path

dest = Path(sys.argv[1])
source = packaged_model_path()
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
    shutil.copy2(source / name, dest / "minilm" / name)
weights = {key: value.to(torch.float16).contiguous() for key, value in load_file(source / "model.safetensors").items()}
save_file(weights, dest / "minilm" / "model.safetensors", metadata={"format": "pt"})
texts = [" ".join(str(text).split()) for text in load_reviews("testing")["text"]]
(dest / "reviews.txt").write_text("\n".join(texts) + "\n")
print(f"[gpu] {source} -> {dest}/minilm (fp16); {len(texts):,} reviews -> {dest}/reviews.txt")
PY
pins=$(.venv/bin/python -c "import importlib.metadata as m; print(' '.join(f'{n}=={m.version(n)}' for n in \
  ('pydantic', 'pydantic_core', 'annotated_types', 'typing_inspection')))")
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dest/wheels" $pins
echo "[gpu] wheels: $pins"
echo "[gpu] $(du -sh "$dest" | cut -f1) in $dest: run bash bench/gpu_check.sh there, carrying $dest"
