/**
 * Key file formats without external tools: PuTTY PPK v2/v3 (fixtures made by puttygen 0.78),
 * RFC 4716 and PEM public keys, the ssh2-style parseKey object, and malformed input of each.
 */
import { generateKeyPairSync } from "node:crypto"
import { describe, expect, it } from "vitest"
import { KeyError, type KeyErrorReason } from "../../src/protocol/keys/errors.js"
import { parseKey, toParsedKey } from "../../src/protocol/keys/parsedKey.js"
import { generatePrivateKey, parsePrivateKey } from "../../src/protocol/keys/privateKey.js"
import { fingerprint, formatPublicKeyLine, verifySignature } from "../../src/protocol/keys/publicKey.js"
import { parsePublicKey } from "../../src/protocol/keys/publicKeyFile.js"
import { decodeRfc4716, encodeRfc4716 } from "../../src/protocol/keys/rfc4716.js"

function reasonOf(f: () => unknown): KeyErrorReason {
  try {
    f()
  } catch (e) {
    if (e instanceof KeyError) return e.reason
    throw new Error(`expected a KeyError, got ${String(e)}`)
  }
  throw new Error("expected a KeyError, nothing was thrown")
}

// one ed25519 key, written by puttygen in each variant; passphrase "secret"
const PUBLIC_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt2Za/IHZPwSe1YgTH5+s5nAymS0uI8cBWz72lWlWOu"
const FINGERPRINT = "SHA256:TtAyTuR2BMp8k0EELP1s8KVerQGwTZ1ii0AaX1fcPtQ"
const head = (version: 2 | 3, encryption: string) =>
  `PuTTY-User-Key-File-${version}: ssh-ed25519\nEncryption: ${encryption}\nComment: ed25519-key-20261126\nPublic-Lines: 2\n` +
  "AAAAC3NzaC1lZDI1NTE5AAAAIHt2Za/IHZPwSe1YgTH5+s5nAymS0uI8cBWz72lW\nlWOu\n"
const PPK3_PLAIN =
  head(3, "none") +
  "Private-Lines: 1\nAAAAIFRPMYCjbRsX7/x+quR5MP0kdaM53qj+1d1jvDbWPlA7\n" +
  "Private-MAC: 50b7698c55e23b24b6c04c66302d41ac793eaa7b76ee8603217f97edc6af3e3a\n"
const PPK2_PLAIN =
  head(2, "none") + "Private-Lines: 1\nAAAAIFRPMYCjbRsX7/x+quR5MP0kdaM53qj+1d1jvDbWPlA7\nPrivate-MAC: ec92ee6e4d50d45bf6d5fcd62189ec475ea1ec80\n"
const PPK2_ENCRYPTED =
  head(2, "aes256-cbc") +
  "Private-Lines: 1\nKOsHE8VKdht47d6T0uuksmxFJoEIt3uVIFrTy78bh74/43lqVwLgE9rFtR3EpF7q\nPrivate-MAC: a376e110efde5d0089f6c8e0851cd021eeffd72f\n"
const PPK3_ENCRYPTED =
  head(3, "aes256-cbc") +
  "Key-Derivation: Argon2id\nArgon2-Memory: 64\nArgon2-Passes: 2\nArgon2-Parallelism: 1\nArgon2-Salt: eebad7b89e13edff875fb9f7a2e548cc\n" +
  "Private-Lines: 1\nfHwKyiwqXrZ69JX5ZP2Sj6bQcWP5L11/7gpP1euthVXVGRVjPusa8d8Hy2DrF6tz\n" +
  "Private-MAC: d347f355ef3cc3d99e422c48d4e1a0c9603927a14663a37347bb10dd5e5461a1\n"

describe("PuTTY private keys", () => {
  it("reads v2 and v3, plain and encrypted, to the same key", () => {
    const data = new TextEncoder().encode("to be signed")
    for (const [text, pass] of [
      [PPK3_PLAIN, undefined],
      [PPK2_PLAIN, undefined],
      [PPK2_ENCRYPTED, "secret"],
      [PPK3_ENCRYPTED, "secret"],
      [PPK3_PLAIN.replace(/\n/g, "\r\n"), undefined]
    ] as const) {
      const key = parsePrivateKey(text, pass)
      expect(key.type).toBe("ssh-ed25519")
      expect(key.comment).toBe("ed25519-key-20261126")
      expect(formatPublicKeyLine(key.publicKey, "")).toBe(PUBLIC_LINE)
      expect(fingerprint(key.publicKey.blob)).toBe(FINGERPRINT)
      expect(verifySignature(key.publicKey.blob, key.sign("ssh-ed25519", data), data)).toBe(true)
    }
  })

  it("tells a missing or wrong passphrase from a modified file", () => {
    expect(reasonOf(() => parsePrivateKey(PPK2_ENCRYPTED))).toBe("passphrase-required")
    expect(reasonOf(() => parsePrivateKey(PPK3_ENCRYPTED, ""))).toBe("passphrase-required")
    expect(reasonOf(() => parsePrivateKey(PPK2_ENCRYPTED, "wrong"))).toBe("bad-passphrase")
    expect(reasonOf(() => parsePrivateKey(PPK3_ENCRYPTED, "wrong"))).toBe("bad-passphrase")
    // the MAC covers the comment: an edited plain file is corrupt
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("Comment: ed25519", "Comment: ED25519")))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(PPK2_PLAIN.replace("ec92ee", "00aa00")))).toBe("corrupt")
  })

  it("refuses malformed files with a typed reason", () => {
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("File-3", "File-1")))).toBe("unsupported-format")
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("Encryption: none", "Encryption: aes128-cbc")))).toBe("unsupported-cipher")
    expect(reasonOf(() => parsePrivateKey(PPK3_ENCRYPTED.replace("Argon2id", "scrypt"), "secret"))).toBe("unsupported-format")
    expect(reasonOf(() => parsePrivateKey(PPK3_ENCRYPTED.replace("Argon2-Memory: 64", "Argon2-Memory: 99999999999"), "secret"))).toBe(
      "unsupported-format"
    )
    expect(reasonOf(() => parsePrivateKey(PPK3_ENCRYPTED.replace("Argon2-Passes: 2", "Argon2-Passes: 0"), "secret"))).toBe("unsupported-format")
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("Public-Lines: 2", "Public-Lines: 99")))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("Public-Lines: 2", "Public-Lines: -1")))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("Private-MAC: 50", "Private-MAC: zz")))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("lWOu", "lW*u")))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(PPK3_PLAIN.replace("Comment: ", "Kommentar: ")))).toBe("corrupt")
    // an encrypted blob that is not whole AES blocks
    expect(reasonOf(() => parsePrivateKey(PPK2_ENCRYPTED.replace("EpF7q", "EpF7qAAAA"), "secret"))).toBe("corrupt")
    // every truncation
    for (let n = 0; n < PPK3_PLAIN.length; n += 7) {
      const r = reasonOf(() => parsePrivateKey(PPK3_PLAIN.slice(0, n)))
      expect(["corrupt", "unsupported-format", "unsupported-cipher"]).toContain(r)
    }
  })
})

describe("public key files", () => {
  const ed = generatePrivateKey("ed25519", { comment: "me@host" })
  const rsa = generatePrivateKey("rsa", { bits: 2048, comment: "r" })
  const ec = generatePrivateKey("ecdsa", { bits: 384 })

  it("reads OpenSSH lines, RFC 4716 and PEM to the same blob", () => {
    for (const key of [ed, rsa, ec]) {
      const line = formatPublicKeyLine(key.publicKey)
      expect(parsePublicKey(line).blob).toEqual(key.publicKey.blob)
      expect(parsePublicKey(`# a comment line\n\n${line}\n`).blob).toEqual(key.publicKey.blob)
      const rfc = parsePublicKey(encodeRfc4716(key.publicKey.blob, key.comment))
      expect(rfc.blob).toEqual(key.publicKey.blob)
      expect(rfc.comment).toBe(key.comment)
      expect(parsePublicKey(toParsedKey(key).getPublicPEM()).blob).toEqual(key.publicKey.blob)
      expect(parsePublicKey(new TextEncoder().encode(line)).blob).toEqual(key.publicKey.blob)
      expect(parsePublicKey(key.publicKey.blob).blob).toEqual(key.publicKey.blob)
    }
  })

  it("reads PKCS#1 RSA public keys", () => {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 })
    const pkcs1 = publicKey.export({ type: "pkcs1", format: "pem" }).toString()
    const spki = publicKey.export({ type: "spki", format: "pem" }).toString()
    expect(parsePublicKey(pkcs1).blob).toEqual(parsePublicKey(spki).blob)
    expect(parsePublicKey(spki).type).toBe("ssh-rsa")
  })

  it("reads RFC 4716 headers with continuations and quoted comments", () => {
    const b64 = Buffer.from(ed.publicKey.blob).toString("base64")
    const text = `---- BEGIN SSH2 PUBLIC KEY ----\nSubject: me\nComment: "a long \\\ncomment"\nx-Private: 1\n${b64.slice(0, 40)}\n${b64.slice(40)}\n---- END SSH2 PUBLIC KEY ----\n`
    const parsed = decodeRfc4716(text)
    expect(parsed.blob).toEqual(ed.publicKey.blob)
    expect(parsed.headers.get("Comment")).toBe("a long comment")
    expect(parsed.headers.get("Subject")).toBe("me")
  })

  it("refuses malformed public key files with a typed reason", () => {
    const rfc = encodeRfc4716(ed.publicKey.blob, "c")
    expect(reasonOf(() => parsePublicKey(rfc.replace("---- END SSH2 PUBLIC KEY ----", "")))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKey("---- BEGIN SSH2 PUBLIC KEY ----\n---- END SSH2 PUBLIC KEY ----\n"))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKey(rfc.replace("Comment:", "Comment \\")))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKey("---- BEGIN SSH2 PUBLIC KEY ----\nComment: x\\\n---- END SSH2 PUBLIC KEY ----\n"))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKey(rfc.replace(/\nAAAA/, "\nA*AA")))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKey("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))).toBe("unsupported-format")
    expect(reasonOf(() => parsePublicKey(""))).toBe("unsupported-format")
    expect(reasonOf(() => parsePublicKey(Uint8Array.of(0, 0, 0, 200, 1)))).toBe("corrupt")
    for (let n = 0; n < rfc.length; n += 5) {
      expect(reasonOf(() => parsePublicKey(rfc.slice(0, n)))).toMatch(/corrupt|unsupported-format/)
    }
  })
})

describe("ssh2-style parsed keys", () => {
  it("offers type, comment, PEM and SSH forms, sign and verify", () => {
    for (const key of [generatePrivateKey("ed25519", { comment: "c" }), generatePrivateKey("ecdsa"), generatePrivateKey("rsa", { bits: 2048 })]) {
      const parsed = toParsedKey(key)
      expect(parsed.isPrivateKey()).toBe(true)
      expect(parsed.type).toBe(key.type)
      expect(parsed.getPublicSSH()).toEqual(Buffer.from(key.publicKey.blob))
      const pub = parseKey(formatPublicKeyLine(key.publicKey))
      expect(pub.isPrivateKey()).toBe(false)
      expect(pub.getPrivatePEM()).toBeNull()
      expect(pub.equals(parsed)).toBe(true)
      expect(parsed.equals(formatPublicKeyLine(key.publicKey, "another comment"))).toBe(true)
      expect(parseKey(parsed.getPublicPEM()).equals(parsed)).toBe(true)
      // the private PEM reads back as the same key
      expect(parseKey(parsed.getPrivatePEM()!).equals(parsed)).toBe(true)
      const sig = parsed.sign("data")
      expect(pub.verify("data", sig)).toBe(true)
      expect(pub.verify("other", sig)).toBe(false)
      // a whole SSH signature blob verifies too
      expect(pub.verify("data", key.sign(key.type === "ssh-rsa" ? "rsa-sha2-256" : key.type, Buffer.from("data")))).toBe(true)
    }
  })

  it("signs RSA with the hash the caller names", () => {
    const parsed = toParsedKey(generatePrivateKey("rsa", { bits: 2048 }))
    const sig = parsed.sign("x", "rsa-sha2-512")
    expect(parsed.verify("x", sig, "sha512")).toBe(true)
    expect(parsed.verify("x", sig, "sha1")).toBe(false)
    expect(() => parsed.sign("x", "md5")).toThrow(KeyError)
  })
})
