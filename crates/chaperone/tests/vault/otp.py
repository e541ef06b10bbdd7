"""TOTP codes for the suites' logins."""


def totp(secret_b32, at=None):
    """RFC 6238 (SHA-1, 6 digits, 30 s), written out so the test trusts no library."""
    import base64
    import hashlib
    import hmac
    import struct
    import time

    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int((time.time() if at is None else at) // 30)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"
