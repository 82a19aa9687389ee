#!/usr/bin/env python3
"""Write the TorchScript test models of workers/backend/pytorch (committed).

Run from this folder with the repository's venv (torch is pinned in
scripts/requirements-torch.txt):  ../../../../.venv/bin/python gen.py

  plus_one.pt   forward(x) -> x + 1 (~x for bool): one file for every datatype,
                the config names the datatype
  add_sub.pt    forward(a, b) -> (a + b, a - b): Triton's INPUT__0/OUTPUT__0 naming
  scale.pt      forward(x, factor) -> x * factor: inputs bound by argument name
  halves.pt     forward(x) -> [x[:, :2], x[:, 2:]]: a List[Tensor] result
  as_dict.pt    forward(x) -> {"y": x}: a result the backend refuses
  corrupt.pt    not a TorchScript file
"""

import io
import zipfile
from typing import Dict, List, Tuple

import torch


class PlusOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bool:
            return ~x
        return x + 1


class AddSub(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return a + b, a - b


class Scale(torch.nn.Module):
    def forward(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return x * factor


class Halves(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [x[:, :2], x[:, 2:]]


class AsDict(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"y": x}


def save(module, name):
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buf)
    # Rewrite the zip with fixed timestamps so that a rerun writes the same bytes.
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            dst.writestr(fixed, src.read(info.filename))
    with open(name, "wb") as f:
        f.write(out.getvalue())
    torch.jit.load(name)  # it still loads


def main():
    save(PlusOne(), "plus_one.pt")
    save(AddSub(), "add_sub.pt")
    save(Scale(), "scale.pt")
    save(Halves(), "halves.pt")
    save(AsDict(), "as_dict.pt")
    with open("corrupt.pt", "wb") as f:
        f.write(b"this is not a TorchScript file\n")


if __name__ == "__main__":
    main()
