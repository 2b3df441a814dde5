/**
 * Private keys in the formats OpenSSL reads: PKCS#1 RSA, SEC1 EC, OpenSSL DSA and PKCS#8, plain
 * or encrypted (legacy Proc-Type/DEK-Info PEM and PKCS#8 EncryptedPrivateKeyInfo). node:crypto
 * parses them; this module decides what its failures mean.
 */
import { createPrivateKey, type KeyObject } from "node:crypto"
import type { ArmoredBlock } from "./armor.js"
import { KeyError } from "./errors.js"
import type { PrivateKeyParts } from "./keyEncoding.js"
import { privateKeyPartsFromKeyObject } from "./nodeKeys.js"

export const pemPrivateKeyLabels: ReadonlyArray<string> = [
  "RSA PRIVATE KEY",
  "EC PRIVATE KEY",
  "DSA PRIVATE KEY",
  "PRIVATE KEY",
  "ENCRYPTED PRIVATE KEY"
]

function isEncrypted(block: ArmoredBlock): boolean {
  return block.label === "ENCRYPTED PRIVATE KEY" || (block.headers.get("Proc-Type") ?? "").includes("ENCRYPTED")
}

export function decodePemPrivateKey(block: ArmoredBlock, passphrase?: Uint8Array): PrivateKeyParts {
  const encrypted = isEncrypted(block)
  if (encrypted && (passphrase === undefined || passphrase.length === 0)) {
    throw new KeyError("passphrase-required", "the private key is encrypted; a passphrase is required")
  }
  let key: KeyObject
  try {
    key = encrypted
      ? createPrivateKey({ key: block.text, format: "pem", passphrase: Buffer.from(passphrase!) })
      : createPrivateKey({ key: block.text, format: "pem" })
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    // OpenSSL names an unknown cipher "unsupported"; its DECODER's "unsupported" is different:
    // a wrong passphrase whose garbage happened to end in valid padding (about 1 in 300)
    if (encrypted && /unsupported/i.test(message) && !/DECODER routines/i.test(message)) {
      throw new KeyError("unsupported-cipher", `the key's encryption is not supported: ${message}`)
    }
    // a wrong passphrase shows up either as bad padding or as garbage that fails to parse
    if (encrypted) throw new KeyError("bad-passphrase", `wrong passphrase or damaged key (${message})`)
    throw new KeyError("corrupt", `malformed ${block.label}: ${message}`)
  }
  return privateKeyPartsFromKeyObject(key)
}
