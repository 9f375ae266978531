"""python -m zoology.bench throughput: prefill and decode speed of a model's parallel and recurrent forms.

Prefill: the parallel form (each mixer's `prefill`) over a B×P prompt, returning the recurrent state and
the last position's logits; prefill tokens/s = B·P / time. Decode: `--decode-steps` greedy recurrent
steps after that prompt (embedding, every layer's `step`, final norm, LM head, argmax);
decode tokens/s = B·steps / time. Each (B, P) point: warm-up runs, then the median of `--repeats` timed
runs, synchronising the device around each. On CUDA the decode steps are also captured as CUDA graphs
(one graph per step, so a state that grows, like attention's KV cache, needs no fixed shape) and
checked against eager decoding; the faster of the two is reported. Peak memory is CUDA's
max_memory_allocated (weights included); a CPU has no such counter, so there only the state bytes,
which are reported everywhere, stand for the memory.

`--compile-decode` (off by default, being slow: torch.compile compiles afresh for every point, whose
batch size fixes the shapes) also decodes with the step compiled (`compiled_step`: every layer's step,
the final norm and the head in one TorchInductor graph, which fuses their elementwise work), where the
model's state keeps its shape from step to step; attention's KV cache grows, so such a point says
`compiled_decode_skipped: "state grows"`. The compiled decode is checked against eager decoding at
every step (else `compiled_decode_error`), then timed as it is (`decode_compiled_tokens_per_s`) and,
on CUDA, captured as CUDA graphs (`decode_compiled_graph_tokens_per_s`). `decode_mode` names the
fastest of eager, cuda_graph, compiled and compiled_cuda_graph, and `decode_tokens_per_s`, `decode_s`
and `decode_x_floor` are the fastest's.

The floor of a decode step is the fewest bytes it can read (`decode_floor_bytes`: every weight once as
stored, the looked-up rows of the token and position tables, the whole recurrent state) over the
device's measured copy bandwidth (`copy_bytes_per_s`, bytes read plus written per second); each point
reports its step time as a multiple of that floor (`decode_x_floor`: 1 is a step that only streams
what it must read).

Weights: a run's kept weights (model.safetensors) when measuring a sweep's runs that have them, else
random (the model's own init); speed does not depend on the values, and each entry says which it
used. Before timing, every layer's recurrent form is checked against its parallel form in float64
on the benchmark device (the conformance kit's check_recurrent_form on 150 tokens: a prefill of them all,
steps from init_state, a prefill of 67 then steps); a mixer that disagrees, or whose state_size is not
its state's element count, is refused.

  python -m zoology.bench throughput attention --set model.d_model=128      # a preset or YAML path
  python -m zoology.bench throughput attention --mixers all -B 1,16 -P 256   # a pure model per mixer
  python -m zoology.bench throughput --sweep runs/mqar                       # every run of a sweep
  python -m zoology.bench throughput based --compile-decode -B 64 -P 1024    # also a compiled step

Results go to <run dir>/throughput.json, keyed by device name and dtype, and results.load joins them;
a config's run dir is RUNS_DIR/train-<family>/<run id>, where `python -m zoology.train` records it.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import json
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import zoology
from zoology import mixers, results
from zoology.config import ModelConfig, TrainConfig, add_set_flag
from zoology.mixers import conformance
from zoology.model import LanguageModel
from zoology.runner.rundir import RunDir, run_dirs, standalone_run
from zoology.utils import copy_rate, pick_device, sync, timings

BATCH_SIZES = (1, 16, 64, 256)
CONTEXTS = (256, 1024, 4096)


class RecurrenceMismatch(ValueError):
    """A mixer's recurrent form does not compute its parallel form, or misreports its state size."""


@dataclass(frozen=True)
class Settings:
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    contexts: tuple[int, ...] = CONTEXTS
    decode_steps: int = 32
    repeats: int = 5
    warmup: int = 2
    device: str = "auto"
    dtype: str = "float32"
    cuda_graphs: bool = True
    compile_decode: bool = False
    seed: int = 0


# Checks.


def check_recurrence(model: LanguageModel, device: torch.device, seq_len: int = 150, split: int = 67) -> None:
    """Refuse (RecurrenceMismatch) a layer whose step/prefill disagree with forward in float64, or whose
    state_size(t) is not the element count of its state per sequence. The defaults cross the usual
    chunk (64) and window (64, 128) boundaries, so a wrong chunk carry or ring buffer is caught."""
    gen = torch.Generator().manual_seed(0)
    for i, block in enumerate(model.blocks):
        mixer = copy.deepcopy(block.mixer).to(device=device, dtype=torch.float64).eval()
        x = torch.randn(2, seq_len, model.config.d_model, generator=gen, dtype=torch.float64).to(device)
        try:
            conformance.check_recurrent_form(mixer, x, prefill_lengths=(split,))
        except conformance.RecurrenceError as e:
            where = f"layer {i} ({type(block.mixer).__module__}.{type(block.mixer).__qualname__})"
            if not e.positions:
                raise RecurrenceMismatch(f"{where}: {e}") from e
            raise RecurrenceMismatch(
                f"{where}: {e.form} disagrees with the parallel form at t={e.positions[0]} ({len(e.positions)} "
                f"positions in all, max relative error {e.error:.2e} > {conformance.RECURRENCE_TOLERANCE:g}, "
                "float64); refusing to benchmark a decode that does not compute the model"
            ) from e


class _ReadCounter(TorchDispatchMode):
    """Counts the tensor elements that non-view operators take as inputs (a device-independent
    measure of the memory a decode step reads)."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            for leaf in _tensors([args, kwargs or {}]):
                self.elements += leaf.numel()
        return func(*args, **(kwargs or {}))


def _mixer_step_reads(model: LanguageModel, state: dict, batch_size: int, autocast) -> int:
    """Elements all layers' mixer.step read (operator inputs) for one token per sequence after `state`."""
    total = 0
    for block, layer_state in zip(model.blocks, state["layers"]):
        x_t = torch.randn(batch_size, model.config.d_model, device=model.embed.weight.device)
        with _ReadCounter() as counter, autocast():
            block.mixer.step(x_t, _clone(layer_state))
        total += counter.elements
    return total


def decode_floor_bytes(model: LanguageModel, state: Any, batch_size: int) -> int:
    """The fewest bytes one decode step (a token for each of `batch_size` sequences) can read: every
    weight once as stored, except that of the token and position tables only the looked-up rows count
    (the whole token table when the head is tied to it), plus the whole recurrent state."""
    looked_up = {id(model.pos_embed.weight)} if model.pos_embed is not None else set()
    if model.unembed is not None:
        looked_up.add(id(model.embed.weight))
    total = 0
    for p in model.parameters():
        elements = min(batch_size, p.shape[0]) * p.shape[1] if id(p) in looked_up else p.numel()
        total += elements * p.element_size()
    return total + sum(t.numel() * t.element_size() for t in _tensors(state))


# Timing.


def _tensors(tree: Any) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        tree = list(tree.values())
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []


def _clone(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_clone(v) for v in tree)
    return tree


def _median_time(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int, setup=None) -> float:
    return statistics.median(timings(fn, device, warmup, repeats, setup))


def _peak_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[Any, int | None]:
    if device.type != "cuda":
        return fn(), None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    sync(device)
    return out, torch.cuda.max_memory_allocated(device)


DECODE_TOLERANCE = 1e-3
"""rtol and atol of a graphed or compiled decode's logits against eager decoding's."""


def decode_logits(step: Callable, token: torch.Tensor, state: Any, steps: int, autocast) -> torch.Tensor:
    """Every step's logits (steps, batch, vocab) of `steps` greedy steps of `step` (model.step or
    `compiled_step(model)`) from `token` and `state` (consumed)."""
    out = []
    with autocast():
        for _ in range(steps):
            logits, state = step(token, state)
            token = logits.argmax(-1)
            out.append(logits)
    return torch.stack(out)


def compiled_step(model: LanguageModel) -> Callable:
    """model.step with `step_layers` (every layer's step, the final norm, the head) compiled by
    torch.compile(dynamic=False), which compiles for the shapes of its first call; the token embedding
    and the position count stay outside the compiled graph, so one compile serves every position."""
    layers = torch.compile(model.step_layers, dynamic=False)

    def step(token_ids: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        x = model.embed_tokens(token_ids[:, None], start=state["pos"])[:, 0]
        logits, states = layers(x, state["layers"])
        return logits, {"pos": state["pos"] + 1, "layers": states}

    return step


def _state_grows(model: LanguageModel, token: torch.Tensor, state: Any, autocast) -> bool:
    """Whether one eager step changes the shape of any state tensor (attention's KV cache grows)."""
    before = [t.shape for t in _tensors(state)]
    with autocast():
        _, state = model.step(token, _clone(state))
    return [t.shape for t in _tensors(state)] != before


def _check_decode(logits: torch.Tensor, reference: torch.Tensor, what: str) -> None:
    if not torch.allclose(logits.float(), reference.float(), rtol=DECODE_TOLERANCE, atol=DECODE_TOLERANCE):
        raise RuntimeError(f"{what} differs from eager decoding")


class _GraphedDecode:
    """The decode loop of `step` (model.step or a compiled one) as one CUDA graph per step, sharing one
    memory pool and replayed in order; the prompt's state and first token live outside the pool and
    are restored before each replay."""

    def __init__(self, step, token0, state0, steps, autocast):
        self.token0, self.state0 = token0, state0
        self.token, self.state = token0.clone(), _clone(state0)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), autocast():
            step(token0, _clone(state0))
        torch.cuda.current_stream().wait_stream(side)
        pool = torch.cuda.graph_pool_handle()
        self.graphs = []
        token, state = self.token, self.state
        for _ in range(steps):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool, stream=side), autocast():
                logits, state = step(token, state)
                token = logits.argmax(-1)
            self.graphs.append(graph)
        self.logits = logits

    def restore(self) -> tuple:
        self.token.copy_(self.token0)
        for static, original in zip(_tensors(self.state), _tensors(self.state0)):
            static.copy_(original)
        return ()

    def run(self) -> torch.Tensor:
        for graph in self.graphs:
            graph.replay()
        return self.logits


def _decode(step: Callable, steps: int, autocast, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """`steps` greedy steps of `step` from `token` and `state` (consumed): (the last logits, the state)."""
    with autocast():
        for _ in range(steps):
            logits, state = step(token, state)
            token = logits.argmax(-1)
    return logits, state


def _error_text(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def _fresh(prompt: dict[str, Any]) -> tuple[torch.Tensor, Any]:
    """The prompt's first decode token and a copy of its state, for a decode to consume."""
    return prompt["token"], _clone(prompt["state"])


def _graphed_seconds(step, prompt, reference, steps, settings: Settings, device, autocast) -> float:
    """Median seconds of `steps` greedy steps of `step` from `prompt` replayed as CUDA graphs, after
    checking the last logits against `reference` (eager decoding's)."""
    graphed = _GraphedDecode(step, prompt["token"], prompt["state"], steps, autocast)
    graphed.restore()
    _check_decode(graphed.run(), reference, "graph replay")
    return _median_time(graphed.run, device, settings.warmup, settings.repeats, setup=graphed.restore)


def _compiled_seconds(point, model, prompt, steps, settings: Settings, device, autocast, graphs) -> dict[str, float]:
    """Median seconds of the compiled step's decode by mode ("compiled", and "compiled_cuda_graph" when
    `graphs`), each checked against eager decoding first; their tokens/s, a skip reason (a state that
    grows has no fixed shape to compile for) or an error go into `point`."""
    fresh = functools.partial(_fresh, prompt)
    if _state_grows(model, *fresh(), autocast):
        point["compiled_decode_skipped"] = "state grows"
        return {}
    batch_size, times = fresh()[0].shape[0], {}
    torch._dynamo.reset()  # compile for this point's shapes afresh, so no cache limit sends it back to eager
    try:
        step = compiled_step(model)
        reference = decode_logits(model.step, *fresh(), steps, autocast)
        _check_decode(decode_logits(step, *fresh(), steps, autocast), reference, "compiled decoding")
        reference = reference[-1].clone()  # the graph check's: the last step's logits
        decode = functools.partial(_decode, step, steps, autocast)
        with torch.compiler.set_stance("fail_on_recompile"):  # the timed runs use the checked graph
            times["compiled"] = _median_time(decode, device, settings.warmup, settings.repeats, setup=fresh)
        point["decode_compiled_s"] = times["compiled"]
        point["decode_compiled_tokens_per_s"] = batch_size * steps / times["compiled"]
    except Exception as e:
        point["compiled_decode_error"] = _error_text(e)
        return times
    if graphs:
        try:
            with torch.compiler.set_stance("fail_on_recompile"):
                seconds = _graphed_seconds(step, prompt, reference, steps, settings, device, autocast)
            times["compiled_cuda_graph"] = seconds
            point["decode_compiled_graph_tokens_per_s"] = batch_size * steps / seconds
        except Exception as e:
            point["compiled_cuda_graph_error"] = _error_text(e)
        torch.cuda.empty_cache()
    return times


def measure_point(
    model: LanguageModel,
    batch_size: int,
    context: int,
    settings: Settings,
    device: torch.device,
    bytes_per_s: float,
) -> dict[str, Any]:
    """Prefill and decode timings, state and memory at one (batch size, prompt length), and the decode
    step's memory floor at the device's measured `bytes_per_s` with the step time's ratio to it."""
    steps = settings.decode_steps
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    ids = torch.randint(model.config.vocab_size, (batch_size, context), device=device, generator=gen)

    def autocast():
        enabled = settings.dtype == "bfloat16"
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=False)

    def run_prefill():
        with autocast():
            return model.prefill(ids)

    decode = functools.partial(_decode, model.step, steps, autocast)

    point: dict[str, Any] = {"batch_size": batch_size, "context": context, "decode_steps": steps}
    prefill_s = _median_time(run_prefill, device, settings.warmup, settings.repeats)
    (logits, state), point["prefill_peak_bytes"] = _peak_bytes(run_prefill, device)
    prompt = {"token": logits.argmax(-1), "state": state}
    del logits, state
    point["prefill_tokens_per_s"] = batch_size * context / prefill_s
    point["prefill_s"] = prefill_s

    fresh = functools.partial(_fresh, prompt)

    point["mixer_step_reads_per_token"] = _mixer_step_reads(model, prompt["state"], batch_size, autocast)
    point["mixer_step_reads_per_token"] //= batch_size
    point["state_elements_per_seq"] = mixers.state_numel(prompt["state"]) // batch_size
    point["state_bytes"] = sum(t.numel() * t.element_size() for t in _tensors(prompt["state"]))
    point["decode_floor_bytes"] = decode_floor_bytes(model, prompt["state"], batch_size)

    eager_s = _median_time(decode, device, settings.warmup, settings.repeats, setup=fresh)
    point["decode_eager_tokens_per_s"] = batch_size * steps / eager_s
    times = {"eager": eager_s}  # seconds of the timed decode by mode
    graphs = device.type == "cuda" and settings.cuda_graphs
    if graphs:
        try:
            reference = decode(*fresh())[0]
            times["cuda_graph"] = _graphed_seconds(model.step, prompt, reference, steps, settings, device, autocast)
            point["decode_graph_tokens_per_s"] = batch_size * steps / times["cuda_graph"]
        except Exception as e:
            point["cuda_graph_error"] = _error_text(e)
        reference = None
        torch.cuda.empty_cache()
    if settings.compile_decode:
        times |= _compiled_seconds(point, model, prompt, steps, settings, device, autocast, graphs)
    _, point["decode_peak_bytes"] = _peak_bytes(lambda: decode(prompt["token"], prompt.pop("state")), device)
    mode = min(times, key=times.get)  # the first of equals: eager before the others
    best_s = times[mode]
    point["decode_tokens_per_s"] = batch_size * steps / best_s
    point["decode_s"] = best_s
    point["decode_mode"] = mode
    point["decode_floor_s"] = point["decode_floor_bytes"] / bytes_per_s  # one step
    point["decode_x_floor"] = best_s / steps / point["decode_floor_s"]
    return point


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.partition(":")[2].strip()
                    break
        except OSError:
            pass
        threads = torch.get_num_threads()
        return f"CPU {cpu}, {threads} thread{'s' if threads > 1 else ''}"
    return str(device)


def build_model(model_config: ModelConfig, settings: Settings, device: torch.device) -> LanguageModel:
    """Random weights from the model's own init; learned positions (if any) cover prompt + decode."""
    torch.manual_seed(settings.seed)
    max_len = max(settings.contexts) + settings.decode_steps
    return LanguageModel(model_config, max_seq_len=max_len).to(device).eval()


def measure(
    model_config: ModelConfig, settings: Settings, log=print, weights_from: Path | None = None
) -> dict[str, Any]:
    """One throughput.json entry: metadata and a point per (batch size, context); with `weights_from`
    (a run directory), that run's final weights instead of random ones."""
    device = pick_device(settings.device)
    if weights_from is None:
        model = build_model(model_config, settings, device)
    else:
        model = results.load_model(weights_from, "final", device)
    check_recurrence(model, device)
    bytes_per_s = copy_rate(device)
    entry: dict[str, Any] = {
        "device": device_name(device),
        "copy_bytes_per_s": bytes_per_s,
        "dtype": settings.dtype,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "params": model.num_parameters(),
        "weights": "random" if weights_from is None else f"trained: {RunDir(weights_from).weights_path('final')}",
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "compile_decode": settings.compile_decode,
        "torch": torch.__version__,
        "version": zoology.__version__,
        "points": [],
    }
    for context in settings.contexts:
        for batch_size in settings.batch_sizes:
            try:
                with torch.inference_mode():
                    point = measure_point(model, batch_size, context, settings, device, bytes_per_s)
            except torch.OutOfMemoryError as e:
                point = {"batch_size": batch_size, "context": context, "error": f"out of memory: {e}"[:300]}
            except mixers.SequenceTooLong as e:
                point = {"batch_size": batch_size, "context": context, "error": f"too long: {e}"[:300]}
            except ValueError as e:  # e.g. a prompt past a trained model's learned positions
                point = {"batch_size": batch_size, "context": context, "error": f"{e}"[:300]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            entry["points"].append(point)
            log(_point_line(model_label(model_config), point))
    return entry


# Results.


def model_label(model_config: ModelConfig) -> str:
    return f"{model_config.family} d{model_config.d_model} L{model_config.n_layers}"


def _point_line(label: str, p: dict) -> str:
    head = f"{label:<32} B={p['batch_size']:<4} P={p['context']:<5}"
    if "error" in p:
        return f"{head} {p['error']}"
    return (
        f"{head} prefill {p['prefill_tokens_per_s']:>12,.0f} tok/s   decode {p['decode_tokens_per_s']:>10,.0f} "
        f"tok/s ({p['decode_mode']}, {p['decode_x_floor']:.0f}× its floor)   state {p['state_elements_per_seq']:,}/seq"
    )


def _weights_note(rows: list[tuple[str, dict]]) -> str:
    trained = sum(e["weights"] != "random" for _, e in rows)
    if not trained:
        return "random weights"
    if trained == len(rows):
        return "trained weights (each run's model.safetensors)"
    return f"trained weights for {trained} model(s), random for {len(rows) - trained}"


def _fmt(value: float | None, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value / scale:,.0f}"


def markdown_table(rows: list[tuple[str, dict]]) -> str:
    """rows: (model label, entry). One line per (model, B, P)."""
    lines = [
        "| model | B | P | prefill tok/s | decode tok/s | decode | step reads MB | × floor | state elems/seq "
        "| mixer reads/token | peak MiB |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for label, entry in rows:
        for p in entry["points"]:
            if "error" in p:
                lines.append(f"| {label} | {p['batch_size']} | {p['context']} | {p['error'][:40]} ||||||||")
                continue
            peaks = [p.get("prefill_peak_bytes"), p.get("decode_peak_bytes")]
            peak = max(peaks) if None not in peaks else None
            lines.append(
                f"| {label} | {p['batch_size']} | {p['context']} | {_fmt(p['prefill_tokens_per_s'])} | "
                f"{_fmt(p['decode_tokens_per_s'])} | {p['decode_mode'].replace('_', ' ')} | "
                f"{p['decode_floor_bytes'] / 1e6:,.2f} | {p['decode_x_floor']:,.1f} | "
                f"{p['state_elements_per_seq']:,} | {p['mixer_step_reads_per_token']:,} | {_fmt(peak, 2**20)} |"
            )
    return "\n".join(lines)


# Command line.


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated positive integers, e.g. 1,16,64")
    return values


def _targets(args: argparse.Namespace) -> list[tuple[ModelConfig, list[Path], Path | None]]:
    """(model config, run directories to write to, the run whose kept weights to use or None) for every
    distinct model asked for; runs of one model are measured once, with the first kept weights found."""
    pairs: list[tuple[TrainConfig, Path | None]] = []
    if args.sweep:
        sweep = Path(args.sweep)
        if sweep.suffix == ".py" and sweep.is_file():
            from zoology.runner.plan import load_sweep

            pairs += [(c, Path(args.runs_dir) / sweep.stem / c.run_id) for c in load_sweep(sweep)]
        else:
            runs = run_dirs(sweep)
            if not runs:
                raise FileNotFoundError(f"{sweep}: no run directories with a config.json")
            for r in runs:
                try:
                    pairs.append((TrainConfig.model_validate(r.config()), r.path))
                except ValueError as e:
                    print(f"skipping {r.path}: its config.json does not load here ({e})", file=sys.stderr)
    for name in args.configs:
        base = TrainConfig.from_yaml(name, args.overrides)
        if args.mixers:
            wanted = mixers.names() if args.mixers == "all" else [m.strip() for m in args.mixers.split(",")]
            configs = [base.set({"model.mixers": [m]}) for m in wanted]
        else:
            configs = [base]
        pairs += [(c, standalone_run(args.runs_dir, c.model.family, c.run_id).path) for c in configs]
    unique: dict[str, tuple[ModelConfig, list[Path], list[Path]]] = {}
    for config, run_dir in pairs:
        key = json.dumps(config.model.model_dump(mode="json"), sort_keys=True)
        model, run_paths, trained = unique.setdefault(key, (config.model, [], []))
        run_paths.append(run_dir)
        if run_dir is not None and RunDir(run_dir).weights_path("final").exists():
            trained.append(run_dir)
    return [(model, run_paths, trained[0] if trained else None) for model, run_paths, trained in unique.values()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoology.bench throughput",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("configs", nargs="*", help="YAML TrainConfigs or preset names in configs/")
    add_set_flag(parser)
    parser.add_argument("--mixers", help="'all' or a comma list: one pure model per mixer from each config")
    parser.add_argument("--sweep", help="a sweep's run directory (runs/<sweep>) or sweep file; one model per run")
    parser.add_argument("-B", "--batch-sizes", type=_int_list, default=BATCH_SIZES, help="default 1,16,64,256")
    parser.add_argument("-P", "--contexts", type=_int_list, default=CONTEXTS, help="default 256,1024,4096")
    parser.add_argument("--decode-steps", type=int, default=32, help="greedy steps timed after the prompt")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per point (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before them")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="bfloat16: autocast")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="capture no CUDA graphs; eager decoding only")
    parser.add_argument(
        "--compile-decode",
        action="store_true",
        help="also time the step compiled by torch.compile, where the state has a fixed shape (slow: per point)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument(
        "--runs-dir",
        default="runs",
        help="a config's results go to RUNS_DIR/train-<family>/<run id> (as zoology.train's)",
    )
    parser.add_argument("--no-save", action="store_true", help="print only; write no throughput.json")
    args = parser.parse_args(argv)
    if not args.configs and not args.sweep:
        parser.error("name a config (preset or YAML path) or --sweep")
    for name in args.configs:
        if Path(name).is_dir():
            parser.error(f"{name} is a directory; to measure a sweep's runs use --sweep {name}")
    for flag in ("decode_steps", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    settings = Settings(
        batch_sizes=args.batch_sizes,
        contexts=args.contexts,
        decode_steps=args.decode_steps,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        dtype=args.dtype,
        cuda_graphs=not args.no_cuda_graphs,
        compile_decode=args.compile_decode,
    )
    rows, failed, written = [], [], []
    for model_config, run_paths, weights_from in _targets(args):
        label = model_label(model_config)
        print(f"{label}: {'random weights' if weights_from is None else f'weights of {weights_from}'}", file=sys.stderr)
        try:
            log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
            entry = measure(model_config, settings, log=log, weights_from=weights_from)
        except RecurrenceMismatch as e:
            print(f"REFUSED {label}: {e}", file=sys.stderr)
            failed.append(label)
            continue
        except Exception as e:
            print(f"FAILED {label}: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(label)
            continue
        rows.append((label, entry))
        if not args.no_save:
            written += [RunDir(run_dir).write_throughput(entry) for run_dir in run_paths]
    if rows:
        e = rows[0][1]
        print(
            f"\nDevice: {e['device']}; {e['dtype']}; decode: {settings.decode_steps} greedy steps after the "
            f"prompt; median of {settings.repeats}; {_weights_note(rows)}; torch {e['torch']}\n"
        )
        print(markdown_table(rows))
    if written:
        shown = "\n  ".join(map(str, written[:4])) + (f"\n  ... ({len(written)} in all)" if len(written) > 4 else "")
        print(f"\nsaved (joined by zoology.results.load once the run has a result):\n  {shown}")
    if failed:
        print(f"\nnot measured: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
