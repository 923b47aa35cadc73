"""The porting tax: what a conversion cost, measured, never estimated.

Coverage and transposes come from the mapping log; drift from the parity report; conversion time
and peak memory from the conversion itself; latency from timing source and converted model on the
same inputs in the same process, one after the other.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass
class PortingTax:
    layers_total: int = 0
    layers_mapped: int = 0
    ops_total: int = 0
    ops_folded: int = 0
    transposes_inserted: int = 0
    source_transposes: int = 0
    conversion_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    drift_rel_l2: float | None = None
    drift_max_abs: float | None = None
    top1_agreement: float | None = None
    # against the float64 reference (porttax.parity.reference): the worst output's converted error, the
    # source's own error there, and their ratio; None where the fixed rule judged (reference_note says why)
    drift_vs_reference: float | None = None
    source_error: float | None = None
    source_error_dtype: str | None = None  # the dtype the source computed in ("float32")
    drift_ratio: float | None = None
    reference_note: str | None = None
    parity_passed: bool | None = None
    latency_source_ms: float | None = None
    latency_converted_ms: float | None = None
    latency_shapes: str | None = None  # the inputs the latency was measured at: "input_ids (1, 8)"
    output_bytes: int | None = None
    source_weight_bytes: int | None = None  # the source's parameters and buffers, as stored (dtype size)
    quantize: str | None = None  # "dynamic" / "int8" for quantised outputs
    load_ms: float | None = None  # the written artefact, from file to ready to run, in its own runtime
    runtime_note: str | None = None  # e.g. how much of the graph a delegate took
    weights_dtype: str | None = None  # the converted model's float weights, and the dtype it computes in
    compute_dtype: str | None = None
    manual_work: list[dict[str, Any]] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.layers_mapped / self.layers_total if self.layers_total else 1.0

    @property
    def latency_ratio(self) -> float | None:
        if self.latency_source_ms and self.latency_converted_ms:
            return self.latency_converted_ms / self.latency_source_ms
        return None

    @property
    def size_ratio(self) -> float | None:
        """Output bytes on disk / the source's weight bytes: what a quantisation (or a format) saves."""
        if self.output_bytes and self.source_weight_bytes:
            return self.output_bytes / self.source_weight_bytes
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"coverage": self.coverage, "latency_ratio": self.latency_ratio,
                               "size_ratio": self.size_ratio}

    def lines(self) -> list[str]:
        out = [
            f"layers mapped      {self.layers_mapped}/{self.layers_total} ({100 * self.coverage:.0f}%), "
            f"{self.ops_total} ops ({self.ops_folded} folded to constants)",
            f"transposes added   {self.transposes_inserted} (the source itself computes {self.source_transposes})",
            f"conversion         {self.conversion_seconds:.1f} s, peak RSS {self.peak_rss_mb:.0f} MB",
        ]
        if self.drift_rel_l2 is not None:
            top1 = f", top-1 agreement {100 * self.top1_agreement:.1f}%" if self.top1_agreement is not None else ""
            out.append(f"drift              ‖a−b‖/‖b‖ {self.drift_rel_l2:.2e}, max abs {self.drift_max_abs:.2e}{top1}")
            if self.drift_ratio is not None:
                out.append(f"  vs float64       {self.drift_vs_reference:.2e} ({self.drift_ratio:.1f}x the source's own "
                           f"fp32 error {self.source_error:.2e})")
            elif self.reference_note:
                out.append(f"  judged by        the fixed tolerance ({self.reference_note})")
        if self.latency_ratio is not None:
            out.append(f"latency (CPU)      source {self.latency_source_ms:.2f} ms, converted "
                       f"{self.latency_converted_ms:.2f} ms ({self.latency_ratio:.2f}×)"
                       + (f" at {self.latency_shapes}" if self.latency_shapes else ""))
        if self.output_bytes is not None:
            ratio = f" ({self.size_ratio:.2f}× the source's weights)" if self.size_ratio is not None else ""
            quant = f", {self.quantize} quantised" if self.quantize else ""
            out.append(f"output size        {self.output_bytes / 1e6:.2f} MB{ratio}{quant}")
        if self.weights_dtype not in (None, "float32") or self.compute_dtype not in (None, "float32"):
            out.append(f"dtype              weights {self.weights_dtype}, computed in {self.compute_dtype}")
        if self.load_ms is not None:
            out.append(f"load               {self.load_ms:.0f} ms into its runtime")
        if self.runtime_note:
            out.append(f"runtime            {self.runtime_note}")
        return out


def _short(dtype: str | None) -> str:
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", None: "fp32"}.get(dtype, str(dtype))


def _proc_mib(path: str, key: str) -> float | None:
    """A "Key:  123 kB" field of a Linux /proc file, in MiB; None where there is no such file."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, or since `reset_peak_rss()` on Linux (VmHWM);
    elsewhere the rusage peak (Linux reports KiB, macOS bytes)."""
    hwm = _proc_mib("/proc/self/status", "VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


def current_rss_mb() -> float:
    return _proc_mib("/proc/self/status", "VmRSS") or peak_rss_mb()


def reset_peak_rss() -> None:
    """Restart the peak mark (Linux ≥ 4.0), so a measurement after imports counts only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def available_memory_mb() -> float:
    """Memory the kernel could give a new process now (MemAvailable); unbounded where unknown."""
    value = _proc_mib("/proc/meminfo", "MemAvailable")
    return float("inf") if value is None else value


def time_call(fn: Callable[[], Any], *, warmup: int = 3, min_runs: int = 10, budget_s: float = 1.0) -> float:
    """Median wall time of `fn` in milliseconds, after warm-up (tracing, allocator growth)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 1000):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def time_interleaved(fns: Mapping[str, Callable[[], Any]], *, block_s: float = 0.05, budget_s: float = 6.0,
                     min_blocks: int = 5) -> dict[str, float]:
    """Median wall time in milliseconds of each callable, timed in short alternating blocks.

    Benchmarks report ratios between runtimes, and a shared machine drifts in speed over seconds:
    blocks of `block_s` taken in turn (a, b, c, a, b, c, ...) expose every runtime to the same drift.
    Blocks rather than single calls, because each runtime's worker threads keep spinning briefly after
    a call and would slow the next runtime; the first call of each block is dropped for that reason.
    """
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    blocks = 0
    while blocks < min_blocks or time.perf_counter() - start < budget_s:
        for key, fn in fns.items():
            fn()
            block_start = time.perf_counter()
            while True:
                t = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t)
                if t - block_start >= block_s:
                    break
        blocks += 1
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def weight_bytes(program: Any) -> int:
    """Bytes of an ExportedProgram's parameters, buffers and tensor constants, at their stored dtype."""
    tensors = list(program.state_dict.values()) + [t for t in program.constants.values() if hasattr(t, "element_size")]
    return sum(int(t.numel()) * int(t.element_size()) for t in tensors)


def size_on_disk(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
