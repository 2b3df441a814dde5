/**
 * The OpenSSH certificate blob (PROTOCOL.certkeys): a public key wrapped with a serial, a type,
 * principals, a validity window, options and a CA's signature. This module only reads and
 * writes the bytes; `certificate.ts` decides whether a certificate is any good.
 */
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"
import { certifiedKeyType, certificateTypeOf } from "./algorithms.js"
import { decodeOrCorrupt, KeyError } from "./errors.js"
import { decodePublicKeyParts, encodePublicKeyParts, readPublicFields, writePublicFields } from "./keyEncoding.js"

export const SSH_CERT_TYPE_USER = 1
export const SSH_CERT_TYPE_HOST = 2

/** `valid before` of a certificate that never expires. */
export const FOREVER = 0xffff_ffff_ffff_ffffn

export interface CertificateFields {
  readonly serial: bigint
  readonly certType: "user" | "host"
  readonly keyId: string
  /** Empty: valid for any principal (OpenSSH refuses that for user certificates). */
  readonly principals: ReadonlyArray<string>
  /** Seconds since the epoch; `validBefore` is FOREVER for no expiry. */
  readonly validAfter: bigint
  readonly validBefore: bigint
  /** force-command and source-address, with their values; an unknown critical option must make the certificate unusable. */
  readonly criticalOptions: ReadonlyMap<string, string>
  /** permit-pty, permit-port-forwarding, ...; values are almost always empty. */
  readonly extensions: ReadonlyMap<string, string>
}

export interface SshCertificate extends CertificateFields {
  /** The certificate key type, e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  readonly type: string
  /** The whole certificate blob, as sent on the wire and stored in `*-cert.pub`. */
  readonly blob: Uint8Array
  readonly nonce: Uint8Array
  /** The certified key's type and plain public key blob. */
  readonly keyType: string
  readonly publicKey: Uint8Array
  /** The CA's public key blob. */
  readonly signatureKey: Uint8Array
  /** The CA's signature blob over `signedData`. */
  readonly signature: Uint8Array
  /** Everything before the signature: what the CA signed. */
  readonly signedData: Uint8Array
}

/**
 * Options and extensions: `string name || string data`, where a non-empty data is itself a
 * string holding the value. Names must be unique and sorted, as OpenSSH writes them.
 */
function readOptions(bytes: Uint8Array, what: string): ReadonlyMap<string, string> {
  const r = new SshReader(bytes)
  const options = new Map<string, string>()
  let previous: string | undefined
  while (r.remaining > 0) {
    const name = r.utf8()
    const data = r.string()
    if (options.has(name)) throw new KeyError("corrupt", `certificate ${what} ${JSON.stringify(name)} appears twice`)
    if (previous !== undefined && name < previous) throw new KeyError("corrupt", `certificate ${what} are not sorted`)
    previous = name
    let value = ""
    if (data.length > 0) {
      const inner = new SshReader(data)
      value = inner.utf8()
      inner.end()
    }
    options.set(name, value)
  }
  return options
}

function writeOptions(options: ReadonlyMap<string, string>): Uint8Array {
  const w = new SshWriter(64)
  for (const name of [...options.keys()].sort()) {
    const value = options.get(name)!
    w.string(name)
    w.string(value === "" ? new Uint8Array(0) : new SshWriter(value.length + 4).string(value).finish())
  }
  return w.finish()
}

function readPrincipals(bytes: Uint8Array): ReadonlyArray<string> {
  const r = new SshReader(bytes)
  const principals: string[] = []
  while (r.remaining > 0) principals.push(r.utf8())
  return principals
}

/** The type name at the start of a key blob, without decoding the rest; undefined when unreadable. */
export function blobKeyType(blob: Uint8Array): string | undefined {
  try {
    return new SshReader(blob).ascii()
  } catch {
    return undefined
  }
}

/** Decodes a certificate blob; throws KeyError ("unsupported-key-type" or "corrupt"). Nothing is verified here. */
export function decodeCertificate(blob: Uint8Array): SshCertificate {
  const copy = Uint8Array.from(blob)
  return decodeOrCorrupt("certificate", () => {
    const r = new SshReader(copy)
    const type = r.ascii()
    const keyType = certifiedKeyType(type)
    if (keyType === undefined) throw new KeyError("unsupported-key-type", `${JSON.stringify(type.slice(0, 64))} is not a certificate type`)
    const nonce = r.string()
    const parts = readPublicFields(keyType, r)
    const serial = r.uint64()
    const typeCode = r.uint32()
    if (typeCode !== SSH_CERT_TYPE_USER && typeCode !== SSH_CERT_TYPE_HOST) {
      throw new KeyError("corrupt", `unknown certificate type ${typeCode}`)
    }
    const keyId = r.utf8()
    const principals = readPrincipals(r.string())
    const validAfter = r.uint64()
    const validBefore = r.uint64()
    const criticalOptions = readOptions(r.string(), "critical options")
    const extensions = readOptions(r.string(), "extensions")
    r.string() // reserved
    const signatureKey = r.string()
    const signedLength = r.offset
    const signature = r.string()
    r.end()
    const caType = blobKeyType(signatureKey)
    if (caType === undefined || certifiedKeyType(caType) !== undefined) {
      throw new KeyError("corrupt", "a certificate's CA key must be a plain public key")
    }
    decodePublicKeyParts(signatureKey)
    return {
      type,
      blob: copy,
      nonce,
      keyType,
      publicKey: encodePublicKeyParts(parts),
      serial,
      certType: typeCode === SSH_CERT_TYPE_USER ? "user" : "host",
      keyId,
      principals,
      validAfter,
      validBefore,
      criticalOptions,
      extensions,
      signatureKey,
      signature,
      signedData: copy.subarray(0, signedLength)
    }
  })
}

/**
 * The bytes a CA signs: every certificate field up to and including the CA key. The signature
 * blob is appended as one more string to make the certificate.
 */
export function encodeCertificateToSign(
  publicKey: Uint8Array,
  nonce: Uint8Array,
  fields: CertificateFields,
  signatureKey: Uint8Array
): Uint8Array {
  const parts = decodeOrCorrupt("public key blob", () => decodePublicKeyParts(publicKey))
  const type = certificateTypeOf(parts.type)
  if (type === undefined) throw new KeyError("unsupported-key-type", `${parts.type} keys cannot be certified`)
  const w = new SshWriter(512).string(type).string(nonce)
  writePublicFields(w, parts)
  const principals = new SshWriter(64)
  for (const p of fields.principals) principals.string(p)
  w.uint64(fields.serial)
    .uint32(fields.certType === "user" ? SSH_CERT_TYPE_USER : SSH_CERT_TYPE_HOST)
    .string(fields.keyId)
    .string(principals.finish())
    .uint64(fields.validAfter)
    .uint64(fields.validBefore)
    .string(writeOptions(fields.criticalOptions))
    .string(writeOptions(fields.extensions))
    .string(new Uint8Array(0))
    .string(signatureKey)
  return w.finish()
}
