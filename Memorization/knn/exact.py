"""The exact nearest-neighbour distance of patch rows to a memory bank, fast and still float64-exact.

Blocks of the squared distances come from one matrix product (bfloat16 with float32 sums where the
CPU multiplies bfloat16 in hardware, float32 otherwise) on data centred on the bank's mean. Each
value carries a proven bound on its rounding error (``search_error_bound``, built on
Memorization.knn.rounding); every bank row whose lower bound is not above the best upper bound so
far is recomputed in float64, so the result is the float64 nearest distance.
"""
import weakref

import torch

from extra.errors import VPCError
from Memorization.knn.rounding import gamma

# Rows of patches and of bank per block. On a CPU a block's values (8 MiB in bfloat16 at 2048) stay
# in cache; on a GPU larger blocks (1 GiB at 16384) keep the kernels busy and the Python loop short.
CHUNK_SIZE = {"cpu": 2048, "cuda": 16384}


# Bank rows per step when centring it, and values per step of the float64 recheck (32 MiB).
PREPARE_ROWS = 65536


RECHECK_VALUES = 1 << 22


# bfloat16's wider rounding bound makes more rows candidates. Where rows lie close together
# compared with their norms (real features often do) that recheck costs more than the faster products
# save: once the candidates exceed this share of the pairs searched (counted past each patch chunk's
# first block, where every row is near), the bank is searched in float32 from then on.
BFLOAT16_CANDIDATE_SHARE = 1 / 1024


# The integer type as wide as each search dtype. A float's bits read as it order as the floats do
# among values >= 0, and every negative value below them; a minimum over integers is several times
# faster than over bfloat16 on a CPU.
SEARCH_BITS = {torch.bfloat16: torch.int16, torch.float32: torch.int32}


def native_bfloat16():
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX), at 2 to 3 times its
    float32 rate; elsewhere bfloat16 is emulated and slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def search_dtype(device):
    """The dtype of the search's matrix products on ``device``: bfloat16 on a CPU that has it in
    hardware, else float32. Not bfloat16 on CUDA: cuBLAS may sum bfloat16 products in bfloat16,
    which ``search_error_bound`` does not cover, and float32 is fast there."""
    return torch.bfloat16 if torch.device(device).type == "cpu" and native_bfloat16() else torch.float32


def search_error_bound(query_norms, bank_norm_max, dim, dtype):
    """Per query, a bound on |s - ||x - m||^2| for every bank row, s being the search's float32 sum
    before its one rounding to ``dtype`` (x: the float64 centred query; m: the bank row less the
    float32 centre, exactly; ``query_norms``: ||x||^2; ``bank_norm_max``: the largest ||m||).

    s sums the K = D + 4 products of a query row [x, ||x||^2 (hi, lo), 1, 1] and a bank row
    [-2 m, 1, 1, ||m||^2 (hi, lo)] rounded to ``dtype`` (unit roundoff u). Each -2 x_i m_i comes out
    within a factor c = (1 + u)^2 (1 + u32)^2 - 1 (x and m each rounded to ``dtype``, perhaps
    through float32; m first to float32 by the centring): 2 c ||x|| ||m|| in all. Products of
    bfloat16 numbers are exact in float32 (of float32 ones, rounded once), and however the float32
    sums are ordered and grouped (one at a time, or two as the bfloat16 dot-product instructions
    take them) no term goes through more than 2K roundings: gamma_2K(float32) times the sum of the
    products' absolute values, at most (1 + c)(||x|| + ||m||)^2. The hi + lo pairs carry the norms
    within 2 u^2 of it, the float32 centring and sum of squares make ||m||^2 off by at most
    3 u32 + gamma_D(float32) of it, and float64 roundings add under 1e-12 of it. Denormal inputs
    and sums flushed to zero add at most 2 K tiny (1 + ||x|| + ||m||).
    """
    unit = torch.finfo(dtype).eps / 2
    unit32 = torch.finfo(torch.float32).eps / 2
    terms = dim + 4
    factor = (1 + unit) ** 2 * (1 + unit32) ** 2 - 1
    query = query_norms.sqrt()
    relative = (gamma(2 * terms, torch.float32) * (1 + factor) + 3 * unit32 + gamma(dim, torch.float32)
                + 2 * unit ** 2 + 1e-12)
    flushed = 2 * terms * torch.finfo(torch.float32).tiny * (1 + query + bank_norm_max)
    return 2 * factor * query * bank_norm_max + relative * (query + bank_norm_max) ** 2 + flushed


def output_widening(dtype):
    """w such that a float32 sum s rounded to ``dtype`` as r (to nearest, or even truncated) is
    within w |r| of s."""
    eps = torch.finfo(dtype).eps
    return eps / (1 - eps)


def split_in(values, dtype):
    """(n, 2) in ``dtype``: a high and a low part of float64 ``values`` whose sum is off by at most
    u^2 |value| (u: the unit roundoff of ``dtype``)."""
    high = values.to(dtype)
    return torch.stack([high, (values - high.double()).to(dtype)], dim=1)


def bank_centre(bank, device):
    """The bank's mean in float32, on ``device``: searches work on rows centred on it, whose smaller
    norms round less (any centre gives the same distances; this one is cheap and deterministic)."""
    return bank.mean(dim=0, dtype=torch.float32).to(device)


def search_matrix(bank, centre, dtype):
    """(the rows [-2 m, 1, 1, ||m||^2 (hi, lo)] in ``dtype`` for m = bank row - ``centre``, on the
    centre's device; the largest ||m|| rounded up): with a query row [x, ||x||^2 (hi, lo), 1, 1] one
    matrix product gives ||x - m||^2."""
    device = centre.device
    dim = bank.shape[1]
    matrix = torch.empty(bank.shape[0], dim + 4, dtype=dtype, device=device)
    matrix[:, dim:dim + 2] = 1
    norm_max = torch.zeros((), dtype=torch.float32, device=device)
    for start in range(0, bank.shape[0], PREPARE_ROWS):
        rows = bank[start:start + PREPARE_ROWS].to(device, torch.float32) - centre
        norms = (rows * rows).sum(dim=1)
        norm_max = torch.maximum(norm_max, norms.max())
        matrix[start:start + PREPARE_ROWS, :dim] = rows * -2
        matrix[start:start + PREPARE_ROWS, dim + 2:] = split_in(norms.double(), dtype)
    # Rounded up past the float32 sum of squares' and the centring's errors: it only enters the bound.
    return matrix, (norm_max.double() * (1 + 2 * gamma(dim + 4, torch.float32))).sqrt() * (1 + 1e-6)


def rounded_up_bits(limits, dtype):
    """The bits (``SEARCH_BITS``) of the least ``dtype`` value >= each float64 limit (limits >= 0)."""
    rounded = limits.to(dtype)
    return rounded.view(SEARCH_BITS[dtype]) + (rounded.double() < limits)


# (id of a bank tensor, what, device) -> what was prepared from it; dropped with the bank.
_PREPARED = {}


def _prepared_key(bank, what, device):
    return id(bank), what, str(device)


def prepared_for(bank, what, device, prepare):
    """``prepare()`` once per bank tensor, ``what`` and device (banks are never changed in place): a
    bank scored video after video is centred and copied once."""
    key = _prepared_key(bank, what, device)
    if key not in _PREPARED:
        _PREPARED[key] = prepare()
        weakref.finalize(bank, _PREPARED.pop, key, None)
    return _PREPARED[key]


def forget_prepared(bank, what, device):
    """Drop what ``prepared_for`` keeps for (bank, what, device), if anything."""
    _PREPARED.pop(_prepared_key(bank, what, device), None)


def pair_squared_distances(queries, bank, centre, pairs):
    """||x - m||^2 in float64 for (query index, bank index) pairs, from the stored values: ``queries``
    are float64 rows already less ``centre`` (float64), which the bank rows are centred on too."""
    out = torch.empty(pairs.shape[0], dtype=torch.float64, device=queries.device)
    step = max(1, RECHECK_VALUES // queries.shape[1])
    for start in range(0, pairs.shape[0], step):
        rows, columns = pairs[start:start + step].unbind(1)
        rows_of_bank = bank[columns.to(bank.device)].to(queries.device, torch.float64) - centre
        out[start:start + step] = ((queries[rows] - rows_of_bank) ** 2).sum(dim=1)
    return out


def check_search(patches, bank):
    """One-line errors for patches and a bank that cannot be searched together (every search's)."""
    if patches.ndim != 2 or bank.ndim != 2 or patches.shape[1] != bank.shape[1]:
        raise VPCError(f"patches {tuple(patches.shape)} and memory bank {tuple(bank.shape)} must be "
                       "(P, D) and (M, D) with the same D: was the bank built with the same settings?")
    if bank.shape[0] == 0:
        raise VPCError("the memory bank is empty: rebuild it from training patches")


def search_in(dtype, bank, centre, queries, query_norms):
    """What a search in ``dtype`` needs: (the bank's rows, made once per bank; the queries' rows; the
    error bound per query; the output widening; the integer type of the values' bits)."""
    device = centre.device
    matrix, norm_max = prepared_for(bank, ("search matrix", dtype), device, lambda: search_matrix(bank, centre, dtype))
    rows = torch.cat([queries.to(dtype), split_in(query_norms, dtype),
                      torch.ones(len(queries), 2, dtype=dtype, device=device)], dim=1)
    return (matrix, rows, search_error_bound(query_norms, norm_max, queries.shape[1], dtype), output_widening(dtype),
            SEARCH_BITS[dtype])


def nearest_distances(patches, bank, chunk_size=None, dtype=None, return_index=False):
    """L2 distance from each row of ``patches`` (P, D) to its nearest row of ``bank`` (M, D).

    Returns (P,) in the patches' dtype, on the patches' device; with ``return_index``, also the index
    of that row, (P,) long (of equally near rows, the lowest), found among the rows rechecked (no
    other pass). Both sides are centred on the bank's mean in float32 (distances do not change; the
    norms, and so the cancellation in ||x||^2 + ||m||^2 - 2 x.m, shrink). Blocks of ``chunk_size`` x ``chunk_size`` pairs (default
    by device: ``CHUNK_SIZE``) get their squared distances from one matrix product in ``dtype``
    with float32 sums (TF32 off), each value s within e = ``search_error_bound`` of the exact one
    before its final rounding, so within w |s| + e after it (w: ``output_widening``). The least
    upper bound U so far of each patch's nearest squared distance rules out every row whose lower
    bound exceeds it: the rest, those with s <= (U + e) / (1 - w), are candidates, and their
    distances are recomputed in float64 as a sum of squared differences. The true nearest row is
    always a candidate, so the result is the float64 nearest distance whatever the dtype.

    ``dtype`` None: ``search_dtype`` for a bank of more than one block, float32 for a smaller one;
    a bank that bfloat16 leaves with too many candidates (``BFLOAT16_CANDIDATE_SHARE``) is searched
    in float32 from that block on, and in later calls.
    Extra memory: a copy of the bank in ``dtype`` (M x (D + 4)) plus about
    4 * chunk_size**2 + 8 * (P * (D + 8)) + 4 * RECHECK_VALUES bytes.
    """
    check_search(patches, bank)
    device = patches.device
    chunk_size = chunk_size or CHUNK_SIZE.get(device.type, CHUNK_SIZE["cpu"])
    centre = prepared_for(bank, "centre", device, lambda: bank_centre(bank, device))
    # bfloat16 needs more than one block to pay (and to be measured): a bank of one is searched in float32.
    preferred = prepared_for(bank, "search dtype", device,           # a list: it changes once at most
                             lambda: [search_dtype(device) if bank.shape[0] > chunk_size else torch.float32])
    adaptive = dtype is None and preferred[0] != torch.float32
    dtype = dtype or preferred[0]
    centre64 = centre.double()
    queries = patches.to(torch.float64) - centre64
    query_norms = (queries ** 2).sum(dim=1)
    search, query_rows, error, widening, bits = search_in(dtype, bank, centre, queries, query_norms)
    upper = torch.full_like(query_norms, float("inf"))            # least upper bounds so far
    nearest = torch.full_like(query_norms, float("inf"))          # float64 squared distances
    index = torch.zeros(len(queries), dtype=torch.long, device=device) if return_index else None
    searched = rechecked = 0                                      # pairs, past each chunk's first block
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        for row in range(0, queries.shape[0], chunk_size):
            rows = slice(row, row + chunk_size)
            for start in range(0, bank.shape[0], chunk_size):
                values = (query_rows[rows] @ search[start:start + chunk_size].T).view(bits)
                minima = values.amin(dim=1)
                # A negative minimum may not be the least of its row's values (its bits order
                # backwards), but its upper bound still bounds the row's nearest distance.
                least = minima.view(dtype).double()
                upper[rows] = torch.minimum(upper[rows], least + widening * least.abs() + error[rows])
                # 1e-12: the float64 arithmetic of the limit itself, rounded up.
                limit = rounded_up_bits((upper[rows] + error[rows]) / (1 - widening) * (1 + 1e-12), dtype)
                near = torch.nonzero(minima <= limit).squeeze(1)
                candidates = 0
                if near.numel():
                    found = torch.nonzero(values[near] <= limit[near, None])
                    pairs = torch.stack([row + near[found[:, 0]], start + found[:, 1]], dim=1)
                    distances = pair_squared_distances(queries, bank, centre64, pairs)
                    before = None if index is None else nearest[pairs[:, 0]]
                    nearest.scatter_reduce_(0, pairs[:, 0], distances, reduce="amin")
                    if index is not None:
                        take_nearest(index, pairs, distances, before, nearest)
                    candidates = len(pairs)
                if start:
                    searched += values.numel()
                    rechecked += candidates
                if adaptive and rechecked > BFLOAT16_CANDIDATE_SHARE * searched:
                    forget_prepared(bank, ("search matrix", dtype), device)
                    preferred[0] = dtype = torch.float32
                    adaptive = False
                    search, query_rows, error, widening, bits = search_in(dtype, bank, centre, queries, query_norms)
    finally:
        torch.set_float32_matmul_precision(previous)
    distances = nearest.sqrt().to(patches.dtype)
    return (distances, index) if return_index else distances


def take_nearest(index, pairs, distances, before, nearest):
    """Point ``index`` of each query whose nearest squared distance dropped below ``before`` (its value
    before these (query, bank row) ``pairs``) to the lowest bank row of the pairs now at it. Bank rows
    come block after block in increasing order, so a later row only equal to the nearest one keeps the
    earlier, lower row."""
    queries = pairs[:, 0]
    better = (distances < before) & (distances == nearest[queries])
    index.scatter_reduce_(0, queries[better], pairs[better, 1], reduce="amin", include_self=False)
