"""How far two materialised merges are apart, tensor by tensor: python merge_compare.py A B."""

import json
import sys
from pathlib import Path

from safetensors import safe_open


def tensors(d):
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        h = safe_open(f, "pt")
        out.update({k: (f, k) for k in h.keys()})
    return out


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
worst, total, count = 0.0, 0.0, 0
for k in sorted(a):
    x = safe_open(a[k][0], "pt").get_tensor(k).float()
    y = safe_open(b[k][0], "pt").get_tensor(k).float()
    d = (x - y).abs()
    worst = max(worst, d.max().item())
    total += d.sum().item()
    count += d.numel()
print(json.dumps({"tensors": len(a), "max_abs_diff": worst, "mean_abs_diff": total / count}))
