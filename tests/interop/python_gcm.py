"""AES-256-GCM with Python's `cryptography` package, for tests/interop.rs.

Speaks the same line protocol as node_gcm.js (all fields hex, "-" for empty):

  seal KEY AAD PLAINTEXT    -> nonce(12) || ciphertext || tag(16)
  open KEY AAD ENVELOPE     -> plaintext, or ERR
  aad NAME VALUE [NAME VALUE ...]
                            -> pinseal's Aad encoding of the fields, built here:
                               for each field, len(name) as 8 bytes big-endian,
                               name, len(value) as 8 bytes big-endian, value
  openexp KEY AAD ENVELOPE NOW
                            -> an expiring envelope, expiry(8 BE) || envelope,
                               opened with Aad("pinseal/expires"=expiry,
                               "aad"=AAD), refused (ERR) if NOW >= expiry
  pseudonym ROOT PURPOSE INPUT
                            -> "ps1." || KeyId(k)[:8 hex] || "." ||
                               base64url(HMAC-SHA256(k, INPUT)[:16]), where
                               k = HKDF-SHA256(ROOT, info "pinseal/v1/pseudonym/" || PURPOSE)
"""
import base64
import hashlib
import hmac
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def unhex(s):
    return b"" if s == "-" else bytes.fromhex(s)


def out(b):
    return b.hex() if b else "-"


def aad_of(fields):
    return b"".join(len(x).to_bytes(8, "big") + x for x in fields)


def aad(parts):
    return aad_of([unhex(p) for p in parts])


def open_expiring(key, ad, env, now):
    expiry = env[:8]
    if len(expiry) < 8:
        raise ValueError("short")
    inner = env[8:]
    if len(inner) < 28:
        raise ValueError("short")
    pt = AESGCM(key).decrypt(inner[:12], inner[12:], aad_of([b"pinseal/expires", expiry, b"aad", ad]))
    if now >= int.from_bytes(expiry, "big"):
        raise ValueError("expired")
    return pt


def pseudonym(root, purpose, value):
    k = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
             info=b"pinseal/v1/pseudonym/" + purpose).derive(root)
    key_id = hashlib.sha256(b"pinseal/v1/key-id" + k).hexdigest()[:8]
    tag = hmac.new(k, value, hashlib.sha256).digest()[:16]
    return ("ps1." + key_id + "." + base64.urlsafe_b64encode(tag).decode().rstrip("=")).encode()


def main():
    for line in sys.stdin:
        words = line.split()
        op = words[0]
        try:
            if op == "aad":
                result = aad(words[1:])
            elif op == "seal":
                key, ad, pt = (unhex(w) for w in words[1:4])
                nonce = os.urandom(12)
                result = nonce + AESGCM(key).encrypt(nonce, pt, ad)
            elif op == "openexp":
                key, ad, env = (unhex(w) for w in words[1:4])
                result = open_expiring(key, ad, env, int(words[4]))
            elif op == "pseudonym":
                root, purpose, value = (unhex(w) for w in words[1:4])
                print(pseudonym(root, purpose, value).decode())
                sys.stdout.flush()
                continue
            elif op == "open":
                key, ad, env = (unhex(w) for w in words[1:4])
                if len(env) < 28:
                    raise ValueError("short")
                result = AESGCM(key).decrypt(env[:12], env[12:], ad)
            else:
                raise ValueError("unknown op")
            print(out(result))
        except Exception:  # any failure is one answer, like pinseal's Decrypt
            print("ERR")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
