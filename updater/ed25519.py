"""Ed25519 signature verification (RFC 8032), strict, in pure Python with an optional fast path.

``verify(public_key, message, signature) -> bool``. The same checks run on every interpreter;
when the ``cryptography`` package imports (CPython host or a well-equipped device), the
double-scalar multiplication is left to it, otherwise it runs here in Python (MicroPython:
big integers; ``pow`` on 255-bit numbers takes about a millisecond).

Checks, in order (any failure means "invalid", never an exception):
1. lengths: a 32-byte public key A, a 64-byte signature R || S;
2. S is canonical: S < L (RFC 8032 5.1.7 step 1; rejects the S + L malleability);
3. A and R decode as RFC 8032 5.1.3 says: the y coordinate is < p (a non-canonical y >= p
   fails), x^2 has a square root, and x = 0 with the sign bit set fails;
4. A and R are not of small order (their 8-multiple is not the identity). RFC 8032 does not
   require this; libsodium does it too. A small-order public key lets anyone make "signatures"
   it accepts, and no honest signer produces a small-order R;
5. the cofactorless equation [S]B = R + [k]A with k = SHA-512(R || A || M) mod L, compared as
   points (equivalent to comparing encodings, since R was decoded canonically). This is the
   equation OpenSSL and libsodium check; RFC 8032 allows it as well as the cofactored one.
A mixed-order public key (a valid point plus a small-order component) passes check 4; only the
key's owner could have produced it, so it is accepted like OpenSSL does.

SHA-512 comes from ``updater.sha512`` (hashlib's when present). Signing is not here: host tools
sign with ``cryptography`` (updater/host/keys.py).
"""

from .sha512 import sha512

try:
    from cryptography.exceptions import InvalidSignature as _InvalidSignature
    from cryptography.exceptions import UnsupportedAlgorithm as _Unsupported
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as _PublicKey
except ImportError:
    _PublicKey = None

P = (1 << 255) - 19
L = (1 << 252) + 27742317777372353535851937790883648493
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
D2 = (2 * D) % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_Y_MASK = (1 << 255) - 1
_EXP_SQRT = (P - 5) // 8

# Points are tuples (X, Y, Z, T) in extended coordinates: x = X/Z, y = Y/Z, x*y = T/Z.
IDENTITY = (0, 1, 1, 0)
BASE = (BX, BY, 1, (BX * BY) % P)


def _double(pt):
    x1, y1, z1 = pt[0], pt[1], pt[2]
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    s = x1 + y1
    e = h - s * s % P
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _cached(pt):
    """(Y+X, Y-X, 2*d*T, 2*Z) of a point: the form a table entry is added in (4 fewer products)."""
    x, y, z, t = pt
    return ((y + x) % P, (y - x) % P, D2 * t % P, 2 * z % P)


def _add_cached(pt, q):
    x1, y1, z1, t1 = pt
    a = (y1 - x1) * q[1] % P
    b = (y1 + x1) * q[0] % P
    c = t1 * q[2] % P
    d = z1 * q[3] % P
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _add(pt, q):
    return _add_cached(pt, _cached(q))


def _negate(pt):
    return ((P - pt[0]) % P, pt[1], pt[2], (P - pt[3]) % P)


def _table(pt):
    """[j]pt in cached form for j = 0..15 (entry 0 unused)."""
    out = [None, _cached(pt)]
    acc = pt
    for _ in range(14):
        acc = _add(acc, pt)
        out.append(_cached(acc))
    return out


_base_table = []


def _base():
    if not _base_table:
        _base_table.append(_table(BASE))
    return _base_table[0]


def _is_identity(pt):
    return pt[0] % P == 0 and (pt[1] - pt[2]) % P == 0


def _small_order(pt):
    q = _double(_double(_double(pt)))
    return _is_identity(q)


def decode_point(data):
    """The affine (x, y) of a 32-byte encoding, or None if RFC 8032 5.1.3 decoding fails."""
    if len(data) != 32:
        return None
    raw = int.from_bytes(bytes(data), "little")
    sign = raw >> 255
    y = raw & _Y_MASK
    if y >= P:
        return None
    yy = y * y % P
    u = (yy - 1) % P
    v = (D * yy + 1) % P
    v3 = v * v % P * v % P
    v7 = v3 * v3 % P * v % P
    x = u * v3 % P * pow(u * v7 % P, _EXP_SQRT, P) % P
    vxx = v * x % P * x % P
    if vxx != u:
        if vxx != (P - u) % P:
            return None
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y)


def encode_point(pt):
    """The 32-byte encoding of an extended-coordinates point."""
    zi = pow(pt[2], P - 2, P)
    x = pt[0] * zi % P
    y = pt[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _point(xy):
    return (xy[0], xy[1], 1, xy[0] * xy[1] % P)


def _scalar_nibbles(n):
    """64 four-bit digits of ``n`` (< 2^256), most significant first."""
    out = []
    for _ in range(64):
        out.append(n & 15)
        n >>= 4
    out.reverse()
    return out


def _double_scalar(s, k, a_point):
    """[s]B + [k]a_point by Straus' method with 4-bit fixed windows."""
    tb = _base()
    ta = _table(a_point)
    ns = _scalar_nibbles(s)
    nk = _scalar_nibbles(k)
    acc = IDENTITY
    for i in range(64):
        if i:
            acc = _double(_double(_double(_double(acc))))
        j = ns[i]
        if j:
            acc = _add_cached(acc, tb[j])
        j = nk[i]
        if j:
            acc = _add_cached(acc, ta[j])
    return acc


def _prechecks(public_key, signature):
    """(A, R, S) as decoded values when checks 1-4 pass, else None."""
    if len(public_key) != 32 or len(signature) != 64:
        return None
    s = int.from_bytes(bytes(signature[32:]), "little")
    if s >= L:
        return None
    a = decode_point(public_key)
    if a is None:
        return None
    r = decode_point(signature[:32])
    if r is None:
        return None
    a_pt = _point(a)
    r_pt = _point(r)
    if _small_order(a_pt) or _small_order(r_pt):
        return None
    return a_pt, r, s


def public_key_problem(public_key):
    """None if ``public_key`` is usable for verification, else why not (for config errors)."""
    if len(public_key) != 32:
        return "expected 32 bytes, got %d" % len(public_key)
    a = decode_point(public_key)
    if a is None:
        return "not a valid curve point encoding"
    if _small_order(_point(a)):
        return "a small-order point (anyone could forge signatures for it)"
    return None


def verify_pure(public_key, message, signature):
    """Strict verification entirely in Python (see the module docstring for the checks)."""
    pre = _prechecks(public_key, signature)
    if pre is None:
        return False
    a_pt, r, s = pre
    k = int.from_bytes(sha512(bytes(signature[:32]) + bytes(public_key) + bytes(message)), "little") % L
    # [S]B - [k]A must equal R: compare projectively (X = x_R * Z, Y = y_R * Z), no inversion.
    q = _double_scalar(s, k, _negate(a_pt))
    return (q[0] - r[0] * q[2]) % P == 0 and (q[1] - r[1] * q[2]) % P == 0


def have_fast_path():
    return _PublicKey is not None


def verify(public_key, message, signature):
    """True only if ``signature`` is a valid strict Ed25519 signature of ``message`` by the key."""
    if _PublicKey is None:
        return verify_pure(public_key, message, signature)
    if _prechecks(public_key, signature) is None:
        return False
    try:
        _PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), bytes(message))
    except (_InvalidSignature, ValueError):
        return False
    except _Unsupported:  # an OpenSSL built without Ed25519 (e.g. some FIPS builds)
        return verify_pure(public_key, message, signature)
    return True
