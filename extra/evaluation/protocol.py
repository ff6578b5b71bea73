"""VideoPatchCore's published protocol (SPEC 7), tuned on the test labels as the paper's tables were
made: each bank alone with its smoothing searched, then the local weights (a1, sigma), then the
total's (b1, sigma), over the published grid in its order, the first best kept. With its fusion
(extra.evaluation.fusion) it makes ``VIDEOPATCHCORE``, what the harness needs of the method.
"""
from dataclasses import dataclass

from extra.evaluation.fusion import (
    GLOBAL_FUSION, LOCAL_FUSION, SIGMAS, WEIGHTS, FusionWeights, bank_stream, calibrated_streams, complement,
    fusable, global_stream, local_score, minmax, smooth, stream_scores, total_score, zscore,
)
from extra.evaluation.harness import MethodEvaluation
from extra.evaluation.metrics import micro_auroc


@dataclass(frozen=True)
class BankBest:
    auroc: float
    sigma: int


@dataclass(frozen=True)
class LocalBest:
    auroc: float
    a1: float
    a2: float
    sigma: int


@dataclass(frozen=True)
class TotalBest:
    auroc: float
    b1: float
    b2: float
    sigma: int


def search_bank(scores, bank, sigmas=SIGMAS):
    """A bank alone, as the paper's single-bank rows: the best sigma for min-max of ``bank_stream``."""
    labels = scores.all_labels()
    best = None
    for sigma in sigmas:
        value = micro_auroc(minmax(bank_stream(scores, bank, sigma)), labels)
        if best is None or value > best.auroc:
            best = BankBest(value, sigma)
    return best


def search_local(scores, weights=WEIGHTS, sigmas=SIGMAS):
    """Search 1 of the published protocol: best (a1, a2, sigma) for minmax(smooth(a1 S + a2 T)).

    Order sigma outer, a1 inner in the order given; the first best is kept (strictly greater
    wins). Each combination is filtered on its own, as the published code does, so ties are
    decided on the same floating-point values.
    """
    spatial, temporal = (scores.concat(bank) for bank in LOCAL_FUSION)
    labels = scores.all_labels()
    best = None
    for sigma in sigmas:
        for a1 in weights:
            a2 = complement(a1)
            value = micro_auroc(minmax(smooth(local_score(a1, a2, spatial, temporal), sigma)), labels)
            if best is None or value > best.auroc:
                best = LocalBest(value, a1, a2, sigma)
    return best


def search_total(scores, a1, a2, weights=WEIGHTS, sigmas=SIGMAS):
    """Search 2: best (b1, b2, sigma) for minmax(b1 * local + b2 * global), local being
    a1 S + a2 T z-scored over all frames then smoothed over the concatenation."""
    spatial, temporal = (scores.concat(bank) for bank in LOCAL_FUSION)
    local_raw = zscore(local_score(a1, a2, spatial, temporal))
    labels = scores.all_labels()
    best = None
    for sigma in sigmas:
        local = smooth(local_raw, sigma)
        glob = global_stream(scores.banks[GLOBAL_FUSION], sigma)
        for b1 in weights:
            b2 = complement(b1)
            value = micro_auroc(minmax(total_score(b1, b2, local, glob)), labels)
            if best is None or value > best.auroc:
                best = TotalBest(value, b1, b2, sigma)
    return best


def published_protocol(scores):
    """Both searches of SPEC 7, and each bank alone with its sigma searched (the single-stream rows
    of the paper's Tables 2 and 5). Everything here is tuned on the test labels."""
    protocol = {f"{bank}_only": search_bank(scores, bank) for bank in scores.banks}
    if fusable(scores.banks):
        local = search_local(scores)
        total = search_total(scores, local.a1, local.a2)
        protocol.update(local=local, total=total,
                        weights=FusionWeights(local.a1, local.a2, total.b1, total.b2, total.sigma))
    return protocol


VIDEOPATCHCORE = MethodEvaluation(
    "VideoPatchCore", streams=stream_scores, calibrated=calibrated_streams, protocol=published_protocol,
    weights=lambda fields: FusionWeights(**fields),
    protocol_note="fusion weights and smoothing searched on the test labels, every stream min-maxed over "
                  "the test set (SPEC 7)")
