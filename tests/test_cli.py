"""The command line as a user runs it: subprocesses, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastcnn as fc
from fastcnn.images import write_png

QUICK = [
    "--train-limit",
    "1024",
    "--batch-size",
    "64",
    "--no-progress",
    "--threads",
    "1",
    "--seed",
    "7",
]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "fastcnn", *args], capture_output=True, text=True, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_info():
    out = run("info").stdout
    assert "cpu_variant" in out and "cuda_built" in out


def test_train_evaluate_predict(tmp_path):
    ckpt = tmp_path / "m.npz"
    out = run("train", *QUICK, "--model", "fmnist-bn", "--epochs", "1", "--save", str(ckpt)).stdout
    assert "test accuracy" in out and ckpt.exists()
    acc = float(out.split("test accuracy")[1].split()[0])
    assert acc > 0.5
    assert "test accuracy" in run("evaluate", str(ckpt)).stdout

    from fastcnn import datasets

    images, labels = datasets.fashion_mnist_subset("test")
    write_png(str(tmp_path / "a.png"), images[0])
    np.save(tmp_path / "b.npy", images[:2])
    out = run(
        "predict", str(ckpt), str(tmp_path / "a.png"), str(tmp_path / "b.npy"), "--top-k", "2"
    ).stdout.splitlines()
    assert len(out) == 3 and out[0].startswith(str(tmp_path / "a.png"))
    assert out[1].split(": ")[1] == out[0].split(": ")[1]  # the same image, the same answer


def test_train_with_rmsprop_and_a_plateau_schedule(tmp_path):
    """--optimizer rmsprop and --schedule plateau train, and a checkpoint resumes with both states
    (the plateau scheduler steps on each epoch's validation loss)."""
    ckpt = tmp_path / "m.npz"
    args = ["train", *QUICK, "--optimizer", "rmsprop", "--lr", "0.001", "--schedule", "plateau"]
    out = run(*args, "--epochs", "1", "--save", str(ckpt)).stdout
    assert float(out.split("test accuracy")[1].split()[0]) > 0.5
    resumed = run(*args, "--epochs", "2", "--save", str(ckpt), "--resume", str(ckpt))
    assert "after epoch 1" in resumed.stderr
    checkpoint = fc.load_checkpoint(ckpt)
    assert checkpoint.epoch == 2
    assert "square_avg" in str(checkpoint.optimizer) and "best" in checkpoint.scheduler


def test_bad_arguments_are_reported_not_raised(tmp_path):
    proc = run("evaluate", str(tmp_path / "missing.npz"), check=False)
    assert proc.returncode != 0 and "missing.npz" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--train-limit", "-5"], "--train-limit"),  # trained on all but the last 5 images
        (["--train-limit", "0"], "--train-limit"),  # trained on all of them
        (["--optimizer", "adam", "--momentum", "0.5"], "--momentum"),  # ignored
        (["--optimizer", "rmsprop", "--nesterov"], "--nesterov"),  # ignored
        (["--epochs", "0", "--plot", "/dev/null/plots"], "/dev/null/plots"),  # a traceback
    ],
)
def test_bad_train_options_are_reported_by_name(args, named, capsys):
    """Each of these trained anyway (ignoring the option or misreading it) or ended in a
    traceback; now each is a usage error naming the option or path, exit status 2."""
    from fastcnn import cli

    try:
        status = cli.main(["train", *QUICK[2:], "--train-limit", "64", *args])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and named in err and "Traceback" not in err


def test_rmsprop_takes_the_momentum_option():
    from argparse import Namespace

    from fastcnn import cli

    params = [fc.Parameter(np.zeros(2))]
    args = Namespace(lr=0.01, weight_decay=0.0, momentum=0.5, nesterov=False)
    assert cli._make_optimizer("rmsprop", params, args).param_groups[0]["momentum"] == 0.5
    args.momentum = None
    assert cli._make_optimizer("sgd", params, args).param_groups[0]["momentum"] == 0.9


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL mid-run, then --resume: the final weights equal an uninterrupted run's, bitwise.
    The kill comes as soon as the first epoch's checkpoint is in place: with a pause before it,
    a fast machine finished all epochs first and the test skipped (CI, 5 epochs, 0.2 s)."""
    args = [*QUICK, "--model", "lenet5", "--epochs", "8"]
    whole = tmp_path / "whole.npz"
    run("train", *args, "--save", str(whole))

    broken = tmp_path / "broken.npz"
    cmd = [sys.executable, "-m", "fastcnn", "train", *args, "--save", str(broken)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # immune to wall-clock steps (NTP)
    while not broken.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # in the second epoch
    proc.wait()
    epoch = fc.load_checkpoint(broken).epoch
    if epoch == 5:
        pytest.skip("the run finished before it could be killed; nothing to resume")
    resumed = run("train", *args, "--save", str(broken), "--resume", str(broken))
    assert f"after epoch {epoch}" in resumed.stderr
    a, b = fc.load(whole).state_dict(), fc.load(broken).state_dict()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _predict_then_fail(tmp_path) -> list[str]:
    """predict: a line for the first image, then an error on the second (a missing file)."""
    from fastcnn import models

    ckpt = tmp_path / "m.npz"
    fc.save(models.fmnist_bn(), str(ckpt))
    np.save(tmp_path / "a.npy", np.zeros((1, 28, 28), np.uint8))
    return ["predict", str(ckpt), str(tmp_path / "a.npy"), str(tmp_path / "missing.npy")]


@pytest.mark.parametrize("command", ["info", "predict then an error"])
@pytest.mark.parametrize("buffered", [True, False])
def test_output_cut_short_by_the_reader_is_not_a_traceback(buffered, command, tmp_path):
    """Piped stdout is block-buffered unless PYTHONUNBUFFERED is set: info's lines then reached
    the pipe only in the exit-time flush, which printed 'Exception ignored ... BrokenPipeError'.
    The test passed only where the environment set PYTHONUNBUFFERED; it now sets it both ways.
    A command that failed after writing to stdout (exit status 2) skipped main's flush and
    printed the same."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    args = ["info"] if command == "info" else _predict_then_fail(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastcnn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # the reader is gone before the first line, like `fastcnn info | true`
    with proc.stderr:
        err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err
    if command != "info":  # unbuffered, the first line already met the closed pipe: status 1
        assert proc.returncode == (2 if buffered else 1)
        assert ("missing.npy" in err) == buffered


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--save", "{tmp}/no-such-folder/m.npz"], "--save"),
        (["--save", "{tmp}"], "--save"),
        (["--history", "{tmp}/no-such-folder/h.json"], "--history"),
        (["--plot", "{tmp}/a-file"], "--plot"),
        (["--plot", "{tmp}/a-file/plots"], "--plot"),
    ],
)
def test_unwritable_outputs_are_reported_before_training(
    args, named, tmp_path, monkeypatch, capsys
):
    """An output path that cannot be written was reported only when it was written: after the
    training (--history, --plot) or after its first epoch (--save)."""
    from fastcnn import cli, training

    def no_training(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(training, "fit", no_training)
    (tmp_path / "a-file").write_text("")
    status = cli.main(["train", *QUICK, *(a.replace("{tmp}", str(tmp_path)) for a in args)])
    err = capsys.readouterr().err
    assert status == 2 and named in err and "Traceback" not in err


def test_plot_without_matplotlib_is_reported_before_training(tmp_path, monkeypatch, capsys):
    """`pip install .` brings no matplotlib: `train --plot` trained, then ended in an ImportError
    traceback."""
    from fastcnn import cli, training

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("training started"))
    status = cli.main(["train", *QUICK, "--plot", str(tmp_path / "plots")])
    err = capsys.readouterr().err
    assert status == 2 and "--plot" in err and "matplotlib" in err


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_outputs_are_checked_before_timing(option, tmp_path, monkeypatch, capsys):
    from fastcnn import cli
    from fastcnn.bench import command

    monkeypatch.setattr(command, "run_case", lambda *a, **k: pytest.fail("timing started"))
    status = cli.main(["bench", "--ops", "relu", option, str(tmp_path / "no-such-folder" / "f")])
    err = capsys.readouterr().err
    assert status == 2 and option in err and "no-such-folder" in err
