"""Worker process entry: `python -m porttax.audit.worker job|memory SPEC.json OUT.json`.

Each model is audited in a process of its own, so a segfault, a runaway allocation or a time limit
ends that model only, and every model starts from the same clean state (frameworks imported in
porttax's order, the same thread count), which keeps drift figures identical between executors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _pin_threads(threads: int) -> None:
    """Same thread count in every worker, whichever executor started it: float reductions then add up
    in the same order, so drift is reproducible, and parallel jobs do not oversubscribe the cores."""
    from porttax._frameworks import import_tf, import_torch

    torch = import_torch()
    torch.set_num_threads(threads)
    tf = import_tf()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised: keep its setting
        pass


def main(argv: list[str]) -> int:
    mode, spec_file, out_file = argv
    spec = json.loads(Path(spec_file).read_text())
    threads = int(spec.get("threads") or spec.get("options", {}).get("threads") or 1)
    _pin_threads(threads)
    if mode == "job":
        from porttax.audit.job import run_job

        result = run_job(spec).to_dict()
    elif mode == "memory":
        from porttax.audit.job import measure_memory

        result = measure_memory(spec)
    else:
        print(f"porttax.audit.worker: unknown mode {mode!r}", file=sys.stderr)
        return 2
    tmp = Path(out_file).with_name(Path(out_file).name + ".tmp")
    tmp.write_text(json.dumps(result, allow_nan=True))
    os.replace(tmp, out_file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
