"""AES-256-GCM with Python's `cryptography` package, for tests/interop.rs.

Speaks the same line protocol as node_gcm.js (all fields hex, "-" for empty):

  seal KEY AAD PLAINTEXT    -> nonce(12) || ciphertext || tag(16)
  open KEY AAD ENVELOPE     -> plaintext, or ERR
  aad NAME VALUE [NAME VALUE ...]
                            -> pinseal's Aad encoding of the fields, built here:
                               for each field, len(name) as 8 bytes big-endian,
                               name, len(value) as 8 bytes big-endian, value
"""
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def unhex(s):
    return b"" if s == "-" else bytes.fromhex(s)


def out(b):
    return b.hex() if b else "-"


def aad(parts):
    fields = [unhex(p) for p in parts]
    return b"".join(len(x).to_bytes(8, "big") + x for x in fields)


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
