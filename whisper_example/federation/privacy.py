"""What may the global head reveal about one node's speakers? Node-level differential privacy
with Flower's own wrappers, mods and accountant (``dp`` = ``server`` or ``client``).

Each round, every sampled node's update (its head minus the head it was sent) is clipped to
an L2 norm, by the server (``server``) or by the node before it replies (``client``, with
Flower's ``fixedclipping_mod`` / ``adaptiveclipping_mod``); the average of the clipped
updates gets Gaussian noise of ``dp-noise-multiplier`` x the norm / the sampled nodes. With
fixed clipping Flower's RDP accountant (``pip install -e ".[dp]"``: ``dp-accounting``) composes
one Gaussian release per round and reports epsilon at ``dp-delta``, under the assumptions
it checks: node-level neighbours (add or remove one node), no amplification by sampling
(Flower samples a fixed number of nodes uniformly, which Poisson-sampling analyses do not
cover), equal weights in plain FedAvg. Adaptive clipping has no accountant in Flower: its
epsilon is recorded as null, not guessed.

Flower's wrapper runs inside the project's ``GuardedStrategy``: the guard first leaves out
replies that are broken or far from the others (with ``server``, judging the raw updates;
with ``client``, the already clipped ones), then the wrapper clips, averages with equal
weights and adds noise to what remains.
"""

from flwr.serverapp import NeighboringRelation, PrivacyConfig, SamplingMethod
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)

from whisper_example.config import ConfigError, RunConfig


def delta_of(config: RunConfig, num_nodes: int) -> float:
    """``dp-delta``, or a tenth of 1 / the number of nodes when it is 0."""
    return config.dp_delta or 0.1 / max(1, num_nodes)


def sampled_per_round(config: RunConfig, num_nodes: int) -> int:
    """How many nodes Flower's FedAvg samples for training each round (its own rule)."""
    return max(int(num_nodes * config.fraction_train), config.min_nodes)


def private(inner: Strategy, config: RunConfig, num_nodes: int):
    """``inner`` wrapped in the Flower DP wrapper ``dp`` and ``dp-clipping`` name, with Flower's
    accountant for fixed clipping. ``num_nodes``: the federation's size, which must not change."""
    sampled = sampled_per_round(config, num_nodes)
    if config.dp_clipping == "adaptive":
        kind = (
            DifferentialPrivacyServerSideAdaptiveClipping
            if config.dp == "server"
            else DifferentialPrivacyClientSideAdaptiveClipping
        )
        try:
            return kind(
                inner,
                config.dp_noise_multiplier,
                sampled,
                initial_clipping_norm=config.dp_clipping_norm,
                target_clipped_quantile=config.dp_target_quantile,
            )
        except ValueError as error:  # e.g. too much noise for the nodes sampled per round
            raise ConfigError(
                f"run config 'dp-clipping' = 'adaptive' with dp-noise-multiplier = {config.dp_noise_multiplier:g} "
                f"and {sampled} nodes per round: Flower refuses it: {error}"
            ) from None
    accountant = None
    if config.dp_noise_multiplier > 0:
        accountant = _accountant(config, num_nodes)
    kind = (
        DifferentialPrivacyServerSideFixedClipping
        if config.dp == "server"
        else DifferentialPrivacyClientSideFixedClipping
    )
    return kind(inner, config.dp_noise_multiplier, config.dp_clipping_norm, sampled, accountant=accountant)


def _accountant(config: RunConfig, num_nodes: int):
    try:
        from flwr.serverapp import RdpAccountant

        return RdpAccountant(
            PrivacyConfig(
                target_delta=delta_of(config, num_nodes),
                population_size=num_nodes,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
    except ImportError as error:
        raise ConfigError(
            f"run config 'dp' = {config.dp!r} accounts epsilon with Flower's accountant, which needs "
            f"dp-accounting ({error}): pip install -e '.[dp]'"
        ) from None


def epsilon_of(strategy) -> float | None:
    """Epsilon spent so far by a fixed-clipping wrapper with an accountant, else None."""
    spent = strategy.privacy_spent() if hasattr(strategy, "privacy_spent") else None
    return None if spent is None else float(spent.epsilon)


def privacy_summary(spent: dict, rounds: int) -> str:
    """The run's last line on privacy: what it spent, or why it cannot say."""
    if spent["epsilon"] is None:
        return (
            f"Privacy: not accounted after {rounds} round(s) (adaptive clipping, or no noise): "
            "no epsilon can be stated for this run"
        )
    return (
        f"Privacy: epsilon {spent['epsilon']:.3g} at delta {spent['delta']:g} after {rounds} round(s) "
        "(node-level, no amplification by sampling claimed)"
    )
