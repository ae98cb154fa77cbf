"""The command line: train, evaluate, predict, info and bench."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import fastcnn
from fastcnn import models
from fastcnn._atomic import write_atomically
from fastcnn._output_paths import check_file_writable, check_folder_writable, check_matplotlib

# --- data ----------------------------------------------------------------------------------------
DATASETS = ("fashion-mnist-subset", "fashion-mnist", "mnist")


def load_split(dataset: str, split: str, path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels of one split."""
    from fastcnn import datasets

    if dataset == "fashion-mnist-subset":
        return datasets.fashion_mnist_subset(split)
    if dataset == "fashion-mnist":
        return datasets.fashion_mnist(split, path=path)
    if dataset == "mnist":
        return datasets.mnist(split, path=path)
    raise ValueError(f"--dataset: expected one of {DATASETS}, got {dataset!r}")


def standardize(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), (x/255 - mean) / std."""
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    return (x - np.float32(mean)) / np.float32(std)


# --- train ---------------------------------------------------------------------------------------
def _make_optimizer(name: str, params, args):
    from fastcnn import optim

    if args.nesterov and name != "sgd":
        raise ValueError(f"--nesterov: only sgd has Nesterov momentum, got --optimizer {name}")
    if args.momentum is not None and name not in ("sgd", "rmsprop"):
        raise ValueError(f"--momentum: sgd and rmsprop take a momentum, got --optimizer {name}")
    if name == "sgd":
        return optim.SGD(
            params,
            lr=args.lr,
            momentum=0.9 if args.momentum is None else args.momentum,
            weight_decay=args.weight_decay,
            nesterov=args.nesterov,
        )
    if name == "adam":
        return optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    if name == "rmsprop":
        return optim.RMSprop(
            params, lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum or 0.0
        )
    raise ValueError(f"--optimizer: expected sgd, adam, adamw or rmsprop, got {name!r}")


def _make_scheduler(name: str, optimizer, args, steps_per_epoch: int):
    from fastcnn import optim

    if name == "none":
        return None
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(args.epochs // 3, 1), gamma=0.1)
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=args.epochs)
    if name == "onecycle":
        return optim.OneCycleLR(
            optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
        )
    if name == "plateau":  # fit() steps it on each epoch's validation loss
        return optim.ReduceLROnPlateau(optimizer, factor=0.1, patience=1)
    raise ValueError(f"--schedule: expected none, step, cosine, onecycle or plateau, got {name!r}")


def _make_loader(x, y, args, epoch_seed: int):
    from fastcnn import data

    transform = None
    if args.augment:
        transform = data.Compose([data.RandomCrop(28, padding=2), data.RandomHorizontalFlip()])
    return data.DataLoader(
        (x, y),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=False,
        seed=epoch_seed,
        transform=transform,
    )


def _check_train_outputs(args) -> None:
    """Fails before training, not after it, on an output that could not be written."""
    if args.save:
        check_file_writable(args.save, "--save")
    if args.history:
        check_file_writable(args.history, "--history")
    if args.plot:
        check_matplotlib("--plot")
        check_folder_writable(args.plot, "--plot")


def cmd_train(args) -> int:
    from fastcnn import io
    from fastcnn.nn import CrossEntropyLoss
    from fastcnn.training import evaluate, fit

    _check_train_outputs(args)
    if args.threads:
        fastcnn.set_num_threads(args.threads)
    fastcnn.manual_seed(args.seed)
    train_images, train_labels = load_split(args.dataset, "train", args.data)
    if args.train_limit:
        train_images, train_labels = (
            train_images[: args.train_limit],
            train_labels[: args.train_limit],
        )
    test_images, test_labels = load_split(args.dataset, "test", args.data)
    mean = float(train_images.mean() / 255.0)
    std = float(train_images.std() / 255.0)
    x_train = standardize(train_images, mean, std)
    x_test = standardize(test_images, mean, std)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1

    start_epoch = 0
    checkpoint = None
    if args.resume and os.path.exists(args.resume):
        checkpoint = io.load_checkpoint(args.resume)
        model = checkpoint.model
        start_epoch = int(checkpoint.epoch or 0)
        print(f"resuming from {args.resume} after epoch {start_epoch}", file=sys.stderr)
    else:
        model = models.build(args.model, num_classes=num_classes)
    loader = _make_loader(x_train, train_labels, args, args.seed)
    optimizer = _make_optimizer(args.optimizer, list(model.parameters()), args)
    scheduler = _make_scheduler(args.schedule, optimizer, args, len(loader))
    if checkpoint is not None:
        if checkpoint.optimizer is not None:
            optimizer.load_state_dict(checkpoint.optimizer)
        if scheduler is not None and checkpoint.scheduler is not None:
            scheduler.load_state_dict(checkpoint.scheduler)
        if checkpoint.rng_state is not None:
            fastcnn.set_rng_state(checkpoint.rng_state)
        if "loader" in checkpoint.extra:
            loader.load_state_dict(checkpoint.extra["loader"])

    from fastcnn import data

    test_loader = data.DataLoader((x_test, test_labels), batch_size=512)
    loss_fn = CrossEntropyLoss(label_smoothing=args.label_smoothing)
    extra = {
        "normalize": {"mean": mean, "std": std},
        "dataset": args.dataset,
        "num_classes": num_classes,
    }

    class SaveEachEpoch:
        def on_epoch_end(self, epoch: int, logs: dict) -> None:
            if args.save:
                io.save(
                    model,
                    args.save,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    epoch=epoch + 1,
                    extra={**extra, "loader": loader.state_dict()},
                )

    history = fit(
        model,
        loader,
        loss_fn,
        optimizer,
        args.epochs,
        val_loader=test_loader,
        scheduler=scheduler,
        callbacks=[SaveEachEpoch()],
        start_epoch=start_epoch,
        progress=not args.no_progress,
    )
    final = evaluate(model, test_loader)
    print(
        f"test accuracy {final['accuracy']:.4f}  test loss {final['loss']:.4f}  "
        f"({len(test_labels)} images, {args.dataset})"
    )
    if args.plot:
        from fastcnn import viz
        from fastcnn.training import predict_proba

        predictions = np.argmax(predict_proba(model, x_test), axis=1)
        paths = viz.save_all(
            model,
            history,
            x_test,
            test_labels,
            predictions,
            _class_names(args.dataset, num_classes),
            args.plot,
        )
        print("wrote " + ", ".join(paths))
    if args.history:
        write_atomically(args.history, lambda f: f.write(json.dumps(history, indent=1).encode()))
    return 0


def _class_names(dataset: str, num_classes: int) -> list[str]:
    if dataset.startswith("fashion"):
        from fastcnn.datasets import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    return [str(i) for i in range(num_classes)]


# --- evaluate / predict --------------------------------------------------------------------------
def _load_for_inference(path: str):
    from fastcnn import io

    checkpoint = io.load_checkpoint(path)
    norm = checkpoint.extra.get("normalize", {"mean": 0.0, "std": 1.0})
    return checkpoint, float(norm["mean"]), float(norm["std"])


def cmd_evaluate(args) -> int:
    from fastcnn import data
    from fastcnn.training import evaluate

    checkpoint, mean, std = _load_for_inference(args.model)
    dataset = args.dataset or checkpoint.extra.get("dataset", "fashion-mnist-subset")
    images, labels = load_split(dataset, "test", args.data)
    loader = data.DataLoader((standardize(images, mean, std), labels), batch_size=512)
    result = evaluate(checkpoint.model, loader)
    print(
        f"test accuracy {result['accuracy']:.4f}  test loss {result['loss']:.4f}  "
        f"({len(labels)} images, {dataset})"
    )
    return 0


def _read_inputs(path: str) -> np.ndarray:
    """Images (N, 28, 28) float32 in [0, 1] from a PNG or a .npy file."""
    from fastcnn.images import read_png, to_gray28

    if path.lower().endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(
                f"{path}: expected images (28, 28), (N, 28, 28) or (N, 1, 28, 28), "
                f"got shape {arr.shape}"
            )
        return np.stack([to_gray28(a) for a in arr])
    return to_gray28(read_png(path))[None]


def cmd_predict(args) -> int:
    from fastcnn.training import predict_proba

    checkpoint, mean, std = _load_for_inference(args.model)
    num_classes = int(checkpoint.extra.get("num_classes", 10))
    names = _class_names(checkpoint.extra.get("dataset", ""), num_classes)
    for path in args.files:
        images = _read_inputs(path)
        x = ((images - np.float32(mean)) / np.float32(std))[:, None].astype(np.float32)
        probs = predict_proba(checkpoint.model, x)
        for i, p in enumerate(probs):
            top = np.argsort(-p)[: args.top_k]
            label = path if len(probs) == 1 else f"{path}[{i}]"
            print(label + ": " + ", ".join(f"{names[k]} {p[k]:.3f}" for k in top))
    return 0


def cmd_info(args) -> int:
    for key, value in fastcnn.info().items():
        print(f"{key:>22}: {value}")
    return 0


def cmd_bench(args) -> int:
    from fastcnn import bench

    return bench.run(args)


# --- parser --------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    """An argparse type: an int >= 1 (a bad one is reported as a usage error, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastcnn", description=fastcnn.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a CNN (default: fmnist-bn on the embedded subset)")
    t.add_argument("--model", choices=sorted(models.MODELS), default="fmnist-bn")
    t.add_argument("--dataset", choices=DATASETS, default="fashion-mnist-subset")
    t.add_argument("--data", help="folder with the idx(.gz) files (else $FASTCNN_DATA or Debian's)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "rmsprop"), default="sgd")
    t.add_argument("--momentum", type=float, help="sgd (default 0.9) or rmsprop (default 0)")
    t.add_argument("--nesterov", action="store_true")
    t.add_argument("--weight-decay", type=float, default=5e-4)
    t.add_argument(
        "--schedule", choices=("none", "step", "cosine", "onecycle", "plateau"), default="none"
    )
    t.add_argument("--augment", action="store_true", help="random crops (pad 2) and flips")
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--threads", type=int, default=0, help="kernel threads (default: all cores)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--save", help="checkpoint written after every epoch (.npz)")
    t.add_argument("--resume", help="continue from this checkpoint if it exists")
    t.add_argument(
        "--plot",
        metavar="DIR",
        help="write training curves, filters, feature maps and the confusion matrix as PNGs",
    )
    t.add_argument("--history", metavar="JSON", help="write the per-epoch history")
    t.add_argument(
        "--train-limit",
        type=_positive_int,
        metavar="N",
        help="train on the first N training images only (quick runs)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy of a saved model")
    e.add_argument("model", help="checkpoint (.npz) written by train --save")
    e.add_argument("--dataset", choices=DATASETS)
    e.add_argument("--data")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of PNG or .npy images")
    p.add_argument("model", help="checkpoint (.npz) written by train --save")
    p.add_argument("files", nargs="+", help="28x28 grayscale PNGs or .npy arrays of images")
    p.add_argument("--top-k", type=int, default=3)
    p.set_defaults(func=cmd_predict)

    i = sub.add_parser("info", help="version, CPU variant, threads, CUDA")
    i.set_defaults(func=cmd_info)

    b = sub.add_parser("bench", help="time each op against NumPy (and PyTorch with --torch)")
    try:
        from fastcnn import bench

        bench.add_arguments(b)
    except ImportError:
        pass
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status = 0
    try:
        status = _run_command(args)
        # A pipe is block-buffered (unless PYTHONUNBUFFERED is set): output is first written here,
        # on success and after an error alike, where a reader that went away is handled below,
        # not by the exit-time flush ("Exception ignored ... BrokenPipeError").
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (`fastcnn info | head`): stop quietly, and keep Python's exit-time
        # flush of stdout from raising again. Output was lost: 1, unless an error came first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return status or 1


def _run_command(args) -> int:
    """The command's exit status; errors become a message on stderr and status 2 (130: Ctrl-C)."""
    try:
        return args.func(args)
    except BrokenPipeError:  # (an OSError, so before the clause below): main handles it
        raise
    except (ValueError, TypeError, OSError) as e:
        # OSError: a path that cannot be written (--plot, --save, --history, --json) or read
        print(f"fastcnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: checkpoints are renamed into place whole, so the last one written is intact.
        print(f"fastcnn {args.command}: interrupted", file=sys.stderr)
        return 130
