/**
 * SSH private keys: reading every common file format, signing, generating, and writing the
 * OpenSSH format.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto"
import { ecdsaCurves } from "./algorithms.js"
import { armor, findArmoredBlock } from "./armor.js"
import { decodeOrCorrupt, KeyError } from "./errors.js"
import { encodePublicKeyParts, type PrivateKeyParts } from "./keyEncoding.js"
import { privateKeyObject, privateKeyPartsFromKeyObject } from "./nodeKeys.js"
import { decodeOpenSSHPrivateKey, encodeOpenSSHPrivateKey as encodeContainer, isOpenSSHKeyBinary } from "./openssh.js"
import { decodePemPrivateKey, pemPrivateKeyLabels } from "./pem.js"
import { decodePpk, isPpk } from "./ppk.js"
import { decodeBase64, parsePublicKeyBlob, type SshPublicKey } from "./publicKey.js"
import { signWithKey } from "./signature.js"

export { keyFileCipherNames } from "./keyFileCiphers.js"

export interface SshPrivateKey {
  readonly type: string
  readonly comment: string
  readonly publicKey: SshPublicKey
  /**
   * Signs `data` with one of `signatureAlgorithms(type)` and returns the signature blob
   * (`string algorithm || string signature`). Throws KeyError for an algorithm of another key type.
   */
  sign(algorithm: string, data: Uint8Array): Uint8Array
}

/** The private fields behind each key this module made; kept off the public object. */
const fieldsOf = new WeakMap<SshPrivateKey, PrivateKeyParts>()

function makePrivateKey(parts: PrivateKeyParts, comment: string, keyObject?: KeyObject): SshPrivateKey {
  const nodeKey = keyObject ?? decodeOrCorrupt("private key values", () => privateKeyObject(parts))
  const publicKey = parsePublicKeyBlob(encodePublicKeyParts(parts.publicKey), comment)
  const key: SshPrivateKey = {
    type: publicKey.type,
    comment,
    publicKey,
    sign: (algorithm, data) => signWithKey(parts, nodeKey, algorithm, data)
  }
  fieldsOf.set(key, parts)
  return key
}

/** The private fields of a key this module made (for exports to other formats); undefined for foreign objects. */
export function privateKeyParts(key: SshPrivateKey): PrivateKeyParts | undefined {
  return fieldsOf.get(key)
}

const OPENSSH_LABEL = "OPENSSH PRIVATE KEY"
const textDecoder = new TextDecoder()

/**
 * Reads a private key file: OpenSSH ("openssh-key-v1", plain or encrypted with bcrypt-pbkdf and
 * any cipher OpenSSH uses for key files), PEM PKCS#1 RSA / SEC1 EC / DSA, PKCS#8 (plain or
 * encrypted), and PuTTY PPK v2/v3 (plain or encrypted). Throws KeyError: "passphrase-required", "bad-passphrase", "unsupported-cipher",
 * "unsupported-key-type", "unsupported-format" or "corrupt".
 */
export function parsePrivateKey(data: string | Uint8Array, passphrase?: string | Uint8Array): SshPrivateKey {
  const pass = typeof passphrase === "string" ? new TextEncoder().encode(passphrase) : passphrase
  if (typeof data !== "string" && isOpenSSHKeyBinary(data)) {
    const { parts, comment } = decodeOpenSSHPrivateKey(data, pass)
    return makePrivateKey(parts, comment)
  }
  const text = typeof data === "string" ? data : textDecoder.decode(data)
  if (isPpk(text)) {
    const { parts, comment } = decodePpk(text, pass)
    return makePrivateKey(parts, comment)
  }
  const block = findArmoredBlock(text, (label) => label === OPENSSH_LABEL || pemPrivateKeyLabels.includes(label))
  if (block === undefined) {
    const what = findArmoredBlock(text, () => true)?.label
    throw new KeyError(
      "unsupported-format",
      what === undefined ? "no private key found (expected a PEM or OpenSSH private key)" : `a ${what} block is not a supported private key`
    )
  }
  if (block.label === OPENSSH_LABEL) {
    const { parts, comment } = decodeOpenSSHPrivateKey(decodeBase64(block.base64, "OpenSSH private key"), pass)
    return makePrivateKey(parts, comment)
  }
  return makePrivateKey(decodePemPrivateKey(block, pass), "")
}

export interface GenerateOptions {
  /** rsa: modulus size, 1024..16384, default 3072; ecdsa: 256, 384 or 521, default 256; ignored for ed25519. */
  readonly bits?: number
  readonly comment?: string
}

/** Generates a new key pair (node:crypto), with ssh-keygen's defaults. */
export function generatePrivateKey(type: "ed25519" | "ecdsa" | "rsa", options: GenerateOptions = {}): SshPrivateKey {
  let keyObject: KeyObject
  switch (type) {
    case "ed25519":
      keyObject = generateKeyPairSync("ed25519").privateKey
      break
    case "ecdsa": {
      const bits = options.bits ?? 256
      const curve = ecdsaCurves.find((c) => c.bits === bits)
      if (curve === undefined) throw new KeyError("unsupported-key-type", `ECDSA keys are 256, 384 or 521 bits, not ${bits}`)
      keyObject = generateKeyPairSync("ec", { namedCurve: curve.nodeName }).privateKey
      break
    }
    case "rsa": {
      const bits = options.bits ?? 3072
      if (!Number.isInteger(bits) || bits < 1024 || bits > 16384) {
        throw new KeyError("unsupported-key-type", `RSA keys are 1024..16384 bits, not ${bits}`)
      }
      keyObject = generateKeyPairSync("rsa", { modulusLength: bits, publicExponent: 65537 }).privateKey
      break
    }
    default:
      throw new KeyError("unsupported-key-type", `cannot generate ${String(type)} keys`)
  }
  return makePrivateKey(privateKeyPartsFromKeyObject(keyObject), options.comment ?? "", keyObject)
}

export interface EncodeOptions {
  /** Encrypts the key when given and non-empty. */
  readonly passphrase?: string
  /** bcrypt-pbkdf rounds, default 16 as ssh-keygen. */
  readonly rounds?: number
  /** Default aes256-ctr; any of keyFileCipherNames. */
  readonly cipher?: string
}

/**
 * Writes a key made by this module as "-----BEGIN OPENSSH PRIVATE KEY-----" text, readable by
 * ssh-keygen and ssh. The comment stored is the key's comment.
 */
export function encodeOpenSSHPrivateKey(key: SshPrivateKey, options: EncodeOptions = {}): string {
  const parts = fieldsOf.get(key)
  if (parts === undefined) throw new KeyError("unsupported-format", "only keys parsed or generated by this library can be encoded")
  const bin = encodeContainer(parts, key.comment, {
    ...(options.passphrase !== undefined ? { passphrase: new TextEncoder().encode(options.passphrase) } : {}),
    ...(options.rounds !== undefined ? { rounds: options.rounds } : {}),
    ...(options.cipher !== undefined ? { cipher: options.cipher } : {})
  })
  return armor(OPENSSH_LABEL, bin)
}

