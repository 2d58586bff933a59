"""Build data/synth/train-plus: one UCF101-layout view (symlinks) of several Synthetic Actions training
folders, e.g. the card's train split (seed 1) and two more generated with other seeds:

    fstcn synth --out data/synth/train-extra  --videos-per-class 60 --seed 3 --workers 2
    fstcn synth --out data/synth/train-extra2 --videos-per-class 60 --seed 4 --workers 2
    python experiments/direction_of_time/train_plus.py data/synth/train-plus \
        data/synth/train data/synth/train-extra data/synth/train-extra2

The first folder's videos keep their names (groups 1..26 for the card's train split); the k-th next
folder's group numbers are shifted by 20 (k + 1) (v_wave_g01_c01 of the second folder becomes
v_wave_g41_c01, of the third v_wave_g61_c01), so names stay unique and the UCF101 naming (gNN_cMM)
holds. trainlist01.txt lists them all, folder by folder; classInd.txt is the first folder's.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

GROUP_STEP = 20  # the k-th folder after the first is shifted by GROUP_STEP * (k + 1)


def main(out: Path, sources: list[Path]) -> None:
    lists = out / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text((sources[0] / "ucfTrainTestlist" / "classInd.txt").read_text())
    lines = []
    for position, source in enumerate(sources):
        shift = GROUP_STEP * (position + 1) if position else 0
        for line in (source / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines():
            if not line.strip():
                continue
            relative, label = line.split()
            class_name, name = relative.split("/")
            group = re.search(r"_g(\d+)_", name)
            if group is None:
                raise ValueError(f"{source}: {name} has no UCF101 group number (_gNN_)")
            renamed = name.replace(group.group(0), f"_g{int(group.group(1)) + shift:02d}_", 1)
            link = out / class_name / renamed
            link.parent.mkdir(exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(os.path.relpath(source / class_name / name, link.parent))
            lines.append(f"{class_name}/{renamed} {label}")
    (lists / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    sys.stdout.write(f"{out}: {len(lines)} videos from {len(sources)} folders\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]])
