"""TOTP enrollment with pyotp, for tests/totp_interop.rs.

Reads one command per line and prints one answer per line:

  code URI_HEX TIME
      pyotp.parse_uri(URI).at(TIME)
  make SECRET_HEX ALGORITHM DIGITS PERIOD ISSUER_HEX ACCOUNT_HEX TIME
      the provisioning_uri pyotp writes for those parameters, then a space,
      then its code at TIME
"""
import base64
import hashlib
import sys

import pyotp

DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def main():
    for line in sys.stdin:
        words = line.split()
        try:
            if words[0] == "code":
                uri = bytes.fromhex(words[1]).decode()
                print(pyotp.parse_uri(uri).at(int(words[2])))
            elif words[0] == "make":
                secret, algo, digits, period, issuer, account, t = words[1:8]
                totp = pyotp.TOTP(
                    base64.b32encode(bytes.fromhex(secret)).decode().rstrip("="),
                    digits=int(digits),
                    digest=DIGESTS[algo],
                    interval=int(period),
                )
                uri = totp.provisioning_uri(
                    name=bytes.fromhex(account).decode(),
                    issuer_name=bytes.fromhex(issuer).decode(),
                )
                print(uri, totp.at(int(t)))
            else:
                print("ERR")
        except Exception as e:  # one answer per line, always
            print("ERR", type(e).__name__)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
