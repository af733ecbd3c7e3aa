"""Hand a randomized model to ART as a classifier whose every gradient is an exact EoT average."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from art.estimators.classification import PyTorchClassifier
from torch import nn

from stochdef.defenses.validation import (
    Bounds,
    check_bounds,
    check_choice,
    check_int,
    check_labels,
    check_shape,
    probe_classes,
)

from .chunking import DEFAULT_MAX_BATCH, Chunk, chunked_sum
from .draws import DrawKind, warn_draws
from .eot import EoT, expectation
from .wrapping import library_eot, module_device

Output = Literal["probs", "logits"]
# Losses over class indices: ART reduces one-hot labels to indices for exactly these (and so do the overrides).
INDEX_LOSSES: tuple[type[nn.Module], ...] = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MultiMarginLoss)
Array = Any  # np.ndarray or torch.Tensor: every method returns the type it received


class EoTClassifier(PyTorchClassifier):
    """ART ``PyTorchClassifier`` over an :class:`~stochdef.adapters.EoT` module.

    Overrides exactly what ART's attacks call, each an exact average over ``samples`` draws:

    * ``predict``: ``E[f(x)]`` (``output="logits"``, the default: the model's own output kind, as a plain
      ``PyTorchClassifier`` returns it) or ``E[softmax(f(x))]`` (``output="probs"``, the ensemble's class
      probabilities; ART's APGD and AutoAttack refuse an estimator that predicts probabilities);
    * ``class_gradient``: ``E[grad_x out_k]`` of that same output, so predictions and gradients agree
      (DeepFool and C&W linearise one with the other, and ART warns that they expect logits);
    * ``loss_gradient``: ``E[grad_x loss(f(x), y)]``, the mean of per-draw gradients of ART's own loss (with
      its own reduction over the whole batch, also where the batch is split into calls of ``max_batch`` rows);
    * ``compute_loss``: ``E[loss(f(x), y)]``.

    A model whose rows of one call share a draw (``"per-call"``, :func:`~stochdef.adapters.draw_kind`, found at
    the first non-empty batch and kept in :attr:`draws`) is called once per draw in each method, on chunks of
    the batch; any other model on the batch replicated ``samples`` times.

    Numpy and torch inputs are accepted and the same type is returned (``predict`` always sees and
    returns numpy: ART's ``InputFilter`` metaclass converts its input first); labels may be integer indices
    of shape ``(N,)`` or one-hot ``(N, nb_classes)``. With ``samples=1`` on a deterministic model and
    ``output="logits"`` every method returns what a plain ``PyTorchClassifier`` returns.

    Like a plain ``PyTorchClassifier`` (DESIGN.md, §C5), the values of ``x`` are not checked: ART's attacks
    query outside ``clip_values`` (NewtonFool) and ART's own wrapper answers. Refused with a clear error,
    where ART's own would fail less clearly: an ``x`` that is not an array or tensor, of rank < 2, or of
    another dtype than the model; labels out of range, of the wrong shape, or soft.
    """

    def __init__(self, eot: EoT, *, output: Output = "logits", **kwargs: Any) -> None:
        super().__init__(model=eot, **kwargs)
        self._eot = eot
        self._output: Output = check_choice("output", output, ("probs", "logits"))  # type: ignore[assignment]

    @property
    def draws(self) -> DrawKind | None:
        """How the model draws (``EoT.draws``): found at the first non-empty batch with ``samples > 1``."""
        return self._eot.draws

    # -- conversions -------------------------------------------------------------------------------
    def _inputs(self, x: Array) -> torch.Tensor:
        xt = torch.from_numpy(np.asarray(x)) if isinstance(x, np.ndarray) else x
        if not isinstance(xt, torch.Tensor):
            raise TypeError(f"x must be a numpy array or torch.Tensor, got {type(x).__name__}")
        param = next(iter(self._eot.parameters()), None)
        if param is not None and xt.is_floating_point() and xt.dtype != param.dtype:
            raise TypeError(f"x must have dtype {param.dtype} like the model, got {xt.dtype}")
        if xt.dim() < 2:
            raise ValueError(f"x must have a batch dimension (rank >= 2), got shape {tuple(xt.shape)}")
        xt = xt.to(self._device)
        warn_draws(self._eot, xt)  # finds how the model draws (self._eot.draws) at the first non-empty batch
        return xt

    def _labels(self, y: Array, batch: int) -> torch.Tensor:
        yt = torch.from_numpy(np.asarray(y)) if isinstance(y, np.ndarray) else y
        if not isinstance(yt, torch.Tensor):
            raise TypeError(f"y must be a numpy array or torch.Tensor, got {type(y).__name__}")
        if yt.dim() == 2:
            if yt.shape[1] != self.nb_classes:
                raise ValueError(f"y must be one-hot with {self.nb_classes} columns, got shape {tuple(yt.shape)}")
            one_hot = bool(((yt == 0) | (yt == 1)).all()) and bool((yt.sum(dim=1) == 1).all())
            if not one_hot:  # soft labels would be silently reduced to their argmax
                raise ValueError("y of shape (N, nb_classes) must be one-hot (a single 1 per row, zeros elsewhere)")
            yt = yt.argmax(dim=1)
        elif yt.is_floating_point() and not bool((yt == yt.round()).all()):
            raise ValueError("y of shape (N,) must hold integer class indices")
        yt = yt.to(device=self._device, dtype=torch.int64)
        check_labels(yt, batch=batch, num_classes=self.nb_classes)
        return yt

    @staticmethod
    def _like(result: torch.Tensor, reference: Array) -> Array:
        if isinstance(reference, torch.Tensor):
            return result
        return result.detach().cpu().numpy()

    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=-1) if self._output == "probs" else logits

    def _mean_weight(self, labels: torch.Tensor) -> float:
        """What ART's loss divides its sum by under ``reduction="mean"`` for these labels.

        The number of labels not ignored, each counted with its class weight (``CrossEntropyLoss``,
        ``NLLLoss``); the number of labels (``MultiMarginLoss``, whose weights do not normalize).
        """
        loss = self._loss
        if not isinstance(loss, (nn.CrossEntropyLoss, nn.NLLLoss)):
            return float(labels.numel())
        kept = labels[labels != loss.ignore_index]
        return float(kept.numel() if loss.weight is None else loss.weight[kept.to(loss.weight.device)].sum())

    # -- what ART's attacks call -----------------------------------------------------------------------
    def predict(self, x: Array, batch_size: int = 128, training_mode: bool = False, **kwargs: Any) -> Array:
        check_int("batch_size", batch_size, minimum=1)
        self._model.train(mode=training_mode)
        xt = self._inputs(x)
        transform = self._transform if self._output == "probs" else None
        with torch.no_grad():
            parts = [
                expectation(
                    self._eot.model,
                    xt[i : i + batch_size],
                    samples=self._eot.samples,
                    max_batch=self._eot.max_batch,
                    transform=transform,
                    draws=self._eot.draws or "per-row",  # None: one draw, or an empty batch
                )
                for i in range(0, xt.shape[0], batch_size)
            ]
        probs = torch.cat(parts) if parts else xt.new_zeros((0, self.nb_classes))
        # ART's own predict returns float32 whatever the model's dtype.
        return probs.detach().cpu().numpy().astype(np.float32)

    def class_gradient(
        self, x: Array, label: int | list[int] | np.ndarray | None = None, training_mode: bool = False, **kwargs: Any
    ) -> Array:
        self._model.train(mode=training_mode)
        xt = self._inputs(x)
        batch = xt.shape[0]
        per_example: torch.Tensor | None = None
        if label is None:
            classes = list(range(self.nb_classes))
        elif isinstance(label, (int, np.integer)):
            if not 0 <= int(label) < self.nb_classes:
                raise ValueError(f"label must be in [0, {self.nb_classes}), got {label}")
            classes = [int(label)]
        else:
            per_example = self._labels(np.asarray(label), batch)
            classes = [-1]
        samples = self._eot.samples
        if batch == 0:  # nothing to draw: no model call
            return self._like(torch.zeros(0, len(classes), *xt.shape[1:], dtype=xt.dtype, device=xt.device), x)

        def step(chunk: Chunk) -> tuple[torch.Tensor]:
            xr = chunk.replicate(xt.detach()).requires_grad_(True)
            out = self._transform(self._eot.model(xr))
            per_class = []
            for j, c in enumerate(classes):
                if per_example is None:
                    target = out[:, c].sum()
                else:
                    target = out.gather(1, chunk.replicate(per_example)[:, None]).sum()
                (g,) = torch.autograd.grad(target, xr, retain_graph=j < len(classes) - 1)
                per_class.append(chunk.fold(g))
            return (torch.stack(per_class, dim=1),)

        with torch.enable_grad():
            (grads,) = chunked_sum(
                step, batch=batch, samples=samples, max_batch=self._eot.max_batch, per_call=self._eot.per_call
            )
        return self._like(grads / samples, x)

    def loss_gradient(self, x: Array, y: Array, training_mode: bool = False, **kwargs: Any) -> Array:
        self._model.train(mode=training_mode)
        xt = self._inputs(x)
        yt = self._labels(y, xt.shape[0])
        batch, samples = xt.shape[0], self._eot.samples
        if batch == 0:  # nothing to draw: no model call
            return self._like(torch.zeros_like(xt), x)
        total = self._mean_weight(yt)

        def step(chunk: Chunk) -> tuple[torch.Tensor]:
            xr = chunk.replicate(xt.detach()).requires_grad_(True)
            out = chunk.draws(self._eot.model(xr))
            labels = yt[chunk.rows]
            # ART's own loss (with its own reduction) on each draw, summed over the draws of this call.
            loss = sum(self._loss(out[s], labels) for s in range(chunk.copies))
            if chunk.width < batch and getattr(self._loss, "reduction", "mean") == "mean":
                # A mean over this slice of rows, rescaled to its share of the mean over the whole batch.
                loss = loss * (self._mean_weight(labels) / total)
            (g,) = torch.autograd.grad(loss, xr)
            return (chunk.fold(g),)

        with torch.enable_grad():
            (grad,) = chunked_sum(
                step, batch=batch, samples=samples, max_batch=self._eot.max_batch, per_call=self._eot.per_call
            )
        return self._like(grad / samples, x)

    def compute_loss(self, x: Array, y: Array, reduction: str = "none", **kwargs: Any) -> Array:
        check_choice("reduction", reduction, ("none", "mean", "sum"))
        self._model.eval()  # as ART's compute_loss: batch-norm statistics must be neither used nor updated
        xt = self._inputs(x)
        yt = self._labels(y, xt.shape[0])
        batch = xt.shape[0]

        def step(chunk: Chunk) -> tuple[torch.Tensor]:
            out = self._eot.model(chunk.replicate(xt))
            return (chunk.fold(self._loss(out, chunk.replicate(yt))),)

        losses = torch.zeros(0, dtype=xt.dtype, device=xt.device)
        previous = self._loss.reduction
        self._loss.reduction = "none"
        try:
            with torch.no_grad():
                if batch > 0:  # nothing to draw otherwise: no model call
                    (losses,) = chunked_sum(
                        step,
                        batch=batch,
                        samples=self._eot.samples,
                        max_batch=self._eot.max_batch,
                        per_call=self._eot.per_call,
                    )
        finally:
            self._loss.reduction = previous
        losses = losses / self._eot.samples
        if reduction == "mean":
            losses = losses.mean()
        elif reduction == "sum":
            losses = losses.sum()
        return losses if isinstance(x, torch.Tensor) else losses.detach().cpu().numpy()


def to_art(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    nb_classes: int,
    clip_values: Bounds,
    samples: int,
    loss: nn.Module | None = None,
    device: str | torch.device | None = None,
    output: Output = "logits",
    max_batch: int = DEFAULT_MAX_BATCH,
) -> EoTClassifier:
    """An ART classifier over ``EoT(model, samples=samples)`` whose gradients are exact EoT averages.

    The model keeps its mode and is moved to ``device``, as ART's own wrapper does (DESIGN.md, §C3, §C5).

    Args:
        model: the classifier, random or not, returning logits of shape ``(batch, nb_classes)``.
        input_shape: the shape of one input, without the batch dimension (``(1, 28, 28)`` for MNIST).
        nb_classes: the number of classes; checked against one call of the model.
        clip_values: ``(low, high)``, the bounds of the inputs.
        samples: the draws every prediction and gradient averages (1: the naive, single-draw model).
        loss: a loss over class indices (``nn.CrossEntropyLoss``, the default, ``nn.NLLLoss`` or
            ``nn.MultiMarginLoss``: the ones ART reduces labels for).
        device: where the model runs; by default where its parameters are.
        output: what ``predict`` and ``class_gradient`` average (see :class:`EoTClassifier`): ``"logits"``,
            the default, is what a plain ``PyTorchClassifier`` of the model returns, so every ART evasion
            attack that runs on one runs on this (APGD and AutoAttack included); ``"probs"`` is the
            ensemble's class probabilities.
        max_batch: the most rows one model call sees (the replicated batch is split into chunks).

    Returns:
        An :class:`EoTClassifier`, a ``PyTorchClassifier`` whose ``predict``, ``class_gradient``,
        ``loss_gradient`` and ``compute_loss`` are exact EoT averages over ``samples`` draws.

    Example:
        >>> import numpy as np
        >>> from art.attacks.evasion import FastGradientMethod
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> clf = to_art(net, input_shape=(4,), nb_classes=3, clip_values=(0, 1), samples=4)
        >>> x = np.random.rand(2, 4).astype(np.float32)
        >>> FastGradientMethod(clf, eps=0.1).generate(x, y=np.array([0, 1])).shape
        (2, 4)
    """
    check_int("nb_classes", nb_classes, minimum=2)
    clip = check_bounds("clip_values", clip_values)
    shape = check_shape("input_shape", input_shape)
    if loss is not None and not isinstance(loss, INDEX_LOSSES):
        # The overrides hand the loss class indices, as ART does for exactly these losses.
        names = ", ".join(f"nn.{cls.__name__}" for cls in INDEX_LOSSES)
        raise TypeError(f"loss must be one of {names} (a loss over class indices), got {type(loss).__name__}")
    dev = module_device(model, device)
    eot = library_eot(model, samples=samples, reduce="logits", max_batch=max_batch, bounds=clip).to(dev)
    probe_classes(model, input_shape=shape, bounds=clip, device=dev, num_classes=nb_classes)  # one call, no trace
    classifier = EoTClassifier(
        eot,
        output=output,
        loss=loss if loss is not None else nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=nb_classes,
        clip_values=clip,
        preprocessing=None,
        device_type="gpu" if dev.type == "cuda" else "cpu",
    )
    # ART picks "cuda:<current device>" for device_type="gpu" and moves the model there: use the one asked for.
    classifier._device = dev
    classifier._model.to(dev)
    return classifier
