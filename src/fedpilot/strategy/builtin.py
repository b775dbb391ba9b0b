"""The built-in strategies, each configured by its section of the spec."""

from __future__ import annotations

from fedpilot.aggregation import fedopt, server_opt
from fedpilot.aggregation._base import Aggregator, ServerOptimizer
from fedpilot.aggregation.fednova import LOCAL_STEPS, FedNovaMean
from fedpilot.spec.aggregation import AggregationSpec
from fedpilot.spec.sections import (
    FedAdagradStrategy,
    FedAdamStrategy,
    FedAvgMStrategy,
    FedAvgStrategy,
    FedNovaStrategy,
    FedProxStrategy,
    FedYogiStrategy,
    ScaffoldStrategy,
)
from fedpilot.strategy._base import Strategy, TransformRef


class FedAvg(Strategy[FedAvgStrategy]):
    """FedAvg (McMahan et al.): the weighted mean of the learners' models."""

    Params = FedAvgStrategy

    def server_optimizer(self) -> ServerOptimizer:
        return server_opt.FedAvgStep(self.params.server_lr)


class FedProx(Strategy[FedProxStrategy]):
    """FedProx (Li et al.): FedAvg plus a proximal term in the learners' objective."""

    Params = FedProxStrategy

    def transforms(self) -> tuple[TransformRef, ...]:
        return (("proximal", {"mu": self.params.mu}),)

    def server_optimizer(self) -> ServerOptimizer:
        return server_opt.FedAvgStep(self.params.server_lr)


class FedAvgM(Strategy[FedAvgMStrategy]):
    """FedAvgM (Hsu et al.): server momentum on the averaged update."""

    Params = FedAvgMStrategy

    def server_optimizer(self) -> ServerOptimizer:
        return server_opt.FedAvgM(self.params)


class FedAdam(Strategy[FedAdamStrategy]):
    """FedAdam (Reddi et al.): an Adam step on the round's pseudo-gradient."""

    Params = FedAdamStrategy

    def server_optimizer(self) -> ServerOptimizer:
        return fedopt.FedAdam(self.params)


class FedYogi(Strategy[FedYogiStrategy]):
    """FedYogi (Reddi et al.): Adam with Yogi's additive second moment."""

    Params = FedYogiStrategy

    def server_optimizer(self) -> ServerOptimizer:
        return fedopt.FedYogi(self.params)


class FedAdagrad(Strategy[FedAdagradStrategy]):
    """FedAdagrad (Reddi et al.): accumulated squared pseudo-gradients."""

    Params = FedAdagradStrategy

    def server_optimizer(self) -> ServerOptimizer:
        return fedopt.FedAdagrad(self.params)


class Scaffold(Strategy[ScaffoldStrategy]):
    """SCAFFOLD (Karimireddy et al.): control variates correct the learners' drift.

    The control variates are the ``scaffold`` update transform's (learner and server
    halves); the server step itself is FedAvg's.
    """

    Params = ScaffoldStrategy

    def transforms(self) -> tuple[TransformRef, ...]:
        return (("scaffold", {}),)

    def server_optimizer(self) -> ServerOptimizer:
        return server_opt.FedAvgStep(self.params.server_lr)


class FedNova(Strategy[FedNovaStrategy]):
    """FedNova (Wang et al.): updates normalised by each learner's local step count."""

    Params = FedNovaStrategy
    requirement = (
        "FedNova normalises a streaming weighted mean (use aggregation.rule=mean without "
        "aggregation.clip or validation.norm_outlier_z)"
    )

    def required_metrics(self) -> tuple[str, ...]:
        return (LOCAL_STEPS,)

    def server_optimizer(self) -> ServerOptimizer:
        return server_opt.FedAvgStep(self.params.server_lr)

    def aggregator(self) -> Aggregator:
        return FedNovaMean()

    def conflicts(self, *, aggregation: AggregationSpec, cohort_checks: bool) -> list[str]:
        found = []
        if aggregation.rule != "mean":
            found.append(f"aggregation.rule={aggregation.rule!r}")
        if aggregation.clip is not None:
            found.append("aggregation.clip")
        if cohort_checks:
            found.append("cohort-level update checks (validation.norm_outlier_z)")
        return found
