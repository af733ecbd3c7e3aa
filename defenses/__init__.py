"""stochdef.defenses: randomized defenses as ordinary PyTorch modules, one family per file.

Every defense stays random in ``eval()`` mode, draws independent randomness for each row of a batch
(vectorized), repeats exactly under ``torch.manual_seed``, and rejects bad configuration with a
``ValueError`` naming the argument (DESIGN.md, §C1, §C2, §C4, §C5). Trained models come from :mod:`.zoo`.

This package exports every name of its modules' ``__all__`` (``data.load`` as ``load_dataset``): the
layers, converters (``to_bayesian``, ``to_rse``, ``apply_sap``, ``inject_noise``, ...), the Renyi and
interval certificates, the models and the trainer. Importing it loads torch only, no attack library.
"""

from __future__ import annotations

from .bayes import bayes_loss, bayes_modules, kl, mean_weights, to_bayesian
from .bayes_layers import BayesBatchNorm2d, BayesConv2d, BayesLinear, BayesModule, gaussian_kl
from .data import DATASETS, Dataset, is_available
from .data import load as load_dataset
from .dropconnect import DropConnectLinear, dropconnect_linear, dropconnect_mask, dropconnect_mlp, set_stochastic
from .functional import gaussian_conv2d, gaussian_linear, per_example_conv2d, per_example_linear
from .intervals import certified, certified_accuracy, interval_bounds, propagate, register_rule
from .models import ResidualUnit, SmallResNet, mlp, small_cnn
from .mwd import (
    MWDLayer,
    clamp_parameters,
    gradient_mode,
    gradient_of,
    mwd_layers,
    mwd_net,
    parameter_clamp,
    set_gradient,
    square_error,
    square_error_loss,
)
from .mwd_functional import mwd_interval, mwd_unit
from .noise import NoiseInjection, inject_noise, noise_layers, sample_noise
from .renyi import (
    certified_epsilon,
    certify,
    entropy,
    gaussian_epsilon,
    guaranteed_accuracy_bound,
    input_epsilon,
    input_radius,
    laplace_epsilon,
    renyi_epsilon,
    risk_gap_bound,
)
from .rse import to_rse
from .sap import (
    StochasticActivationPruning,
    apply_sap,
    dense_view,
    insert_after,
    keep_probability,
    prune,
    pruning_mask,
    replace_modules,
    sample_count,
    scale_factors,
)
from .sap_baselines import (
    InferenceDropout,
    RandomlyScaledActivations,
    RandomlyScaledWeights,
    RandomNoisyWeights,
    StochasticWeightPruning,
    apply_dropout,
    apply_dwp,
    apply_rna,
    apply_rnw,
    apply_rsa,
    apply_rsw,
    apply_swp,
    random_scale,
    top_magnitude_mask,
    wrap_layers,
)
from .sdr import (
    SDRDecay,
    SDRLinear,
    ThresholdSchedule,
    VarianceThresholds,
    clamp_std,
    sdr_decay_update,
    sdr_layers,
    sdr_mlp,
    std_range,
)
from .sensitivity import (
    identity_sensitivity,
    linear_sensitivity,
    norm_ratio,
    operator_norm_bound,
    sequential_sensitivity,
)
from .training import History, accuracy, cross_entropy_loss, fit, make_optimizer, pgd_adversary

__all__ = [
    "BayesBatchNorm2d",
    "BayesConv2d",
    "BayesLinear",
    "BayesModule",
    "DATASETS",
    "Dataset",
    "DropConnectLinear",
    "History",
    "InferenceDropout",
    "MWDLayer",
    "NoiseInjection",
    "RandomNoisyWeights",
    "RandomlyScaledActivations",
    "RandomlyScaledWeights",
    "ResidualUnit",
    "SDRDecay",
    "SDRLinear",
    "SmallResNet",
    "StochasticActivationPruning",
    "StochasticWeightPruning",
    "ThresholdSchedule",
    "VarianceThresholds",
    "accuracy",
    "apply_dropout",
    "apply_dwp",
    "apply_rna",
    "apply_rnw",
    "apply_rsa",
    "apply_rsw",
    "apply_sap",
    "apply_swp",
    "bayes_loss",
    "bayes_modules",
    "certified",
    "certified_accuracy",
    "certified_epsilon",
    "certify",
    "clamp_parameters",
    "clamp_std",
    "cross_entropy_loss",
    "dense_view",
    "dropconnect_linear",
    "dropconnect_mask",
    "dropconnect_mlp",
    "entropy",
    "fit",
    "gaussian_conv2d",
    "gaussian_epsilon",
    "gaussian_kl",
    "gaussian_linear",
    "gradient_mode",
    "gradient_of",
    "guaranteed_accuracy_bound",
    "identity_sensitivity",
    "inject_noise",
    "input_epsilon",
    "input_radius",
    "insert_after",
    "interval_bounds",
    "is_available",
    "keep_probability",
    "kl",
    "laplace_epsilon",
    "linear_sensitivity",
    "load_dataset",
    "make_optimizer",
    "mean_weights",
    "mlp",
    "mwd_interval",
    "mwd_layers",
    "mwd_net",
    "mwd_unit",
    "noise_layers",
    "norm_ratio",
    "operator_norm_bound",
    "parameter_clamp",
    "per_example_conv2d",
    "per_example_linear",
    "pgd_adversary",
    "propagate",
    "prune",
    "pruning_mask",
    "random_scale",
    "register_rule",
    "renyi_epsilon",
    "replace_modules",
    "risk_gap_bound",
    "sample_count",
    "sample_noise",
    "scale_factors",
    "sdr_decay_update",
    "sdr_layers",
    "sdr_mlp",
    "sequential_sensitivity",
    "set_gradient",
    "set_stochastic",
    "small_cnn",
    "square_error",
    "square_error_loss",
    "std_range",
    "to_bayesian",
    "to_rse",
    "top_magnitude_mask",
    "wrap_layers",
]
