import { createHash, createPrivateKey, generateKeyPairSync, sign as nodeSign } from "node:crypto"
import { beforeAll, describe, expect, it } from "vitest"
import { bcryptPbkdf } from "../../src/protocol/keys/bcryptPbkdf.js"
import { Blowfish } from "../../src/protocol/keys/blowfish.js"
import { KeyError, type KeyErrorReason } from "../../src/protocol/keys/errors.js"
import {
  encodeOpenSSHPrivateKey,
  generatePrivateKey,
  keyFileCipherNames,
  parsePrivateKey,
  type SshPrivateKey
} from "../../src/protocol/keys/privateKey.js"
import {
  fingerprint,
  formatPublicKeyLine,
  keyTypeOfAlgorithm,
  parsePublicKeyBlob,
  parsePublicKeyLine,
  parseSignatureBlob,
  signatureAlgorithms,
  verifySignature
} from "../../src/protocol/keys/publicKey.js"
import { SshReader } from "../../src/protocol/wire/reader.js"
import { concatBytes, SshWriter } from "../../src/protocol/wire/writer.js"

const enc = (s: string) => new TextEncoder().encode(s)
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const b64 = (s: string) => Uint8Array.from(Buffer.from(s, "base64"))

function keyError(f: () => unknown): KeyError {
  try {
    f()
  } catch (e) {
    if (e instanceof KeyError) return e
    throw new Error(`expected a KeyError, got ${String(e)}`)
  }
  throw new Error("expected a KeyError, nothing was thrown")
}
const reasonOf = (f: () => unknown): KeyErrorReason => keyError(f).reason

/** Armors binary as an OpenSSH private key file. */
const opensshPem = (bin: Uint8Array) =>
  `-----BEGIN OPENSSH PRIVATE KEY-----\n${Buffer.from(bin).toString("base64")}\n-----END OPENSSH PRIVATE KEY-----\n`
const opensshBinary = (pem: string) => b64(pem.split("\n").filter((l) => !l.startsWith("-----")).join(""))

describe("bcrypt_pbkdf", () => {
  // OpenBSD's regress vectors for bcrypt_pbkdf(3), as published with the RustCrypto crate
  const vectors: ReadonlyArray<readonly [string, string, number, string]> = [
    ["password", "salt", 4, "5bbf0cc293587f1c3635555c27796598d47e579071bf427e9d8fbe842aba34d9"],
    ["password", "\x00", 4, "c12b566235eee04c212598970a579a67"],
    ["\x00", "salt", 4, "6051be18c2f4f82cbf0efee5471b4bb9"],
    ["password\x00", "salt\x00", 4, "7410e44cf4fa07bfaac8a928b1727fac001375e7bf7384370f48efd121743050"],
    ["pass\x00wor", "sa\x00l", 4, "c2bffd9db38f6569efef4372f4de83c0"],
    ["pass\x00word", "sa\x00lt", 4, "4ba4ac3925c0e8d7f0cdb6bb1684a56f"],
    [
      "password",
      "salt",
      8,
      "e1367ec5151a33faac4cc1c144cd23fa15d5548493ecc99b9b5d9c0d3b27bec76227ea66088b849b20ab7aa478010246e74bba51723fefa9f9474d6508845e8d"
    ],
    ["password", "salt", 42, "833cf0dcf56db65608e8f0dc0ce882bd"],
    [
      "Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum.",
      "salis\x00",
      8,
      "10978b07253df57f71a162eb0e8ad30a"
    ]
  ]
  for (const [password, salt, rounds, expected] of vectors) {
    it(`matches the OpenBSD vector ${JSON.stringify(password.slice(0, 12))}/${JSON.stringify(salt)}/${rounds}/${expected.length / 2}`, () => {
      expect(hex(bcryptPbkdf(enc(password), enc(salt), expected.length / 2, rounds))).toBe(expected)
    })
  }

  it("rejects zero rounds and out-of-range key lengths", () => {
    expect(() => bcryptPbkdf(enc("p"), enc("s"), 32, 0)).toThrow(RangeError)
    expect(() => bcryptPbkdf(enc("p"), enc("s"), 0, 1)).toThrow(RangeError)
    expect(() => bcryptPbkdf(enc("p"), enc("s"), 1025, 1)).toThrow(RangeError)
  })

  // Eric Young's Blowfish vectors: the plain Blowfish key schedule is expand0state from the pi state
  it("is built on a correct Blowfish", () => {
    const vectors = [
      ["0000000000000000", "0000000000000000", "4ef997456198dd78"],
      ["ffffffffffffffff", "ffffffffffffffff", "51866fd5b85ecb8a"],
      ["3000000000000000", "1000000000000001", "7d856f9a613063f2"],
      ["fedcba9876543210", "0123456789abcdef", "0aceab0fc6a0a28d"]
    ]
    for (const [key, plain, cipher] of vectors) {
      const bf = new Blowfish()
      bf.expand(Buffer.from(key!, "hex"))
      const words = Uint32Array.of(parseInt(plain!.slice(0, 8), 16), parseInt(plain!.slice(8), 16))
      bf.encryptWords(words)
      expect(words[0]!.toString(16).padStart(8, "0") + words[1]!.toString(16).padStart(8, "0")).toBe(cipher)
    }
  })
})

describe("public keys", () => {
  // OpenSSH regress/unittests/sshkey/testdata: the keys and their .fp files
  const rsa1 =
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAYQDP+jA5lVZv7jUJmaTnLYaAAIDA1IOxuB+mSy8jxIW6CmgQR7yHcGXQ5gftCw39w9Wll8lHdv6QpAsrIgc6nf+dt8wM42Ox2sqi+gPeNAMSgQW1i5/l+otsiUe3UzmJJOk= RSA test key #1"
  const ed1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILk95V5J3LKVx8bcLSB4073R7d0aAvR8gJrPvnV0D3MQ ED25519 test key #1"
  const edSk2 =
    "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIBXx+7VJzfVAsrZH/MY903e97nG4W8NzuYQBbFtoj5hzAAAABHNzaDo= ED25519-SK test key #2"
  const ecdsaSk2 =
    "sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBJOX5JHqtOCU5mZxCQK0nc936VaKd7Oj+AeTihl1lxNCyYRizvroGVYa4HYHPepBEtrpxew/7gr2QCMAnvN2gVQAAAAEc3NoOg== ECDSA-SK test key #2"

  it("gives the fingerprints ssh-keygen gives", () => {
    expect(fingerprint(parsePublicKeyLine(rsa1).blob, "md5")).toBe("MD5:be:27:4c:16:27:f5:04:03:62:a8:b7:91:df:a5:b1:3b")
    expect(fingerprint(parsePublicKeyLine(ed1).blob, "md5")).toBe("MD5:19:08:8e:7e:4d:e5:de:86:2a:09:47:65:eb:0a:51:2f")
    expect(fingerprint(parsePublicKeyLine(edSk2).blob)).toBe("SHA256:b9BVPS5vuU4yu/FgweojLLg6zbfmBBoWLUgibdxxsoo")
    expect(fingerprint(parsePublicKeyLine(ecdsaSk2).blob)).toBe("SHA256:pz8VkgtRY3r50F4zSuzRlmq9c6vPTpJXLKKOgkyUcKE")
  })

  it("reads type, size and comment of each key type", () => {
    expect(parsePublicKeyLine(rsa1)).toMatchObject({ type: "ssh-rsa", bits: 768, comment: "RSA test key #1" })
    expect(parsePublicKeyLine(ed1)).toMatchObject({ type: "ssh-ed25519", bits: 256, comment: "ED25519 test key #1" })
    expect(parsePublicKeyLine(edSk2)).toMatchObject({ type: "sk-ssh-ed25519@openssh.com", bits: 256 })
    expect(parsePublicKeyLine(ecdsaSk2)).toMatchObject({ type: "sk-ecdsa-sha2-nistp256@openssh.com", bits: 256 })
    expect(parsePublicKeyLine("  ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILk95V5J3LKVx8bcLSB4073R7d0aAvR8gJrPvnV0D3MQ\n").comment).toBe("")
  })

  it("formats the line it parsed, optionally with another comment", () => {
    const key = parsePublicKeyLine(ed1)
    expect(formatPublicKeyLine(key)).toBe(ed1)
    expect(formatPublicKeyLine(key, "other")).toBe(ed1.replace("ED25519 test key #1", "other"))
    expect(formatPublicKeyLine(key, "")).toBe(ed1.split(" ").slice(0, 2).join(" "))
  })

  it("names signature algorithms and their key types", () => {
    expect(signatureAlgorithms("ssh-rsa")).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"])
    expect(signatureAlgorithms("ssh-ed25519")).toEqual(["ssh-ed25519"])
    expect(signatureAlgorithms("ecdsa-sha2-nistp384")).toEqual(["ecdsa-sha2-nistp384"])
    expect(signatureAlgorithms("ssh-foo")).toEqual([])
    expect(keyTypeOfAlgorithm("rsa-sha2-256")).toBe("ssh-rsa")
    expect(keyTypeOfAlgorithm("rsa-sha2-512")).toBe("ssh-rsa")
    expect(keyTypeOfAlgorithm("ssh-ed25519")).toBe("ssh-ed25519")
  })

  it("refuses malformed lines and blobs with a typed reason", () => {
    expect(reasonOf(() => parsePublicKeyLine("ssh-ed25519"))).toBe("unsupported-format")
    expect(reasonOf(() => parsePublicKeyLine("ssh-ed25519 AAAA*C3Nz"))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKeyLine("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILk95V5J3LKVx8bcLSB4073R7d0aAvR8gJrPvnV0D3M"))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKeyLine(ed1.replace("ssh-ed25519", "ssh-rsa")))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKeyBlob(new SshWriter().string("ssh-foo").string("x").finish()))).toBe("unsupported-key-type")

    const blob = parsePublicKeyLine(ecdsaSk2).blob
    for (let n = 0; n < blob.length; n++) expect(reasonOf(() => parsePublicKeyBlob(blob.subarray(0, n)))).toBe("corrupt")
    expect(reasonOf(() => parsePublicKeyBlob(concatBytes(blob, Uint8Array.of(0))))).toBe("corrupt")
    // a length field claiming 4 GiB
    const huge = Uint8Array.from(blob)
    huge.set([0xff, 0xff, 0xff, 0xff], 0)
    expect(reasonOf(() => parsePublicKeyBlob(huge))).toBe("corrupt")

    const nistp384Curve = new SshWriter().string("ecdsa-sha2-nistp256").string("nistp384").string(new Uint8Array(97)).finish()
    expect(reasonOf(() => parsePublicKeyBlob(nistp384Curve))).toBe("corrupt")
    const shortEd = new SshWriter().string("ssh-ed25519").string(new Uint8Array(31)).finish()
    expect(reasonOf(() => parsePublicKeyBlob(shortEd))).toBe("corrupt")
    const negativeRsa = new SshWriter().string("ssh-rsa").string(Uint8Array.of(0x81)).string(Uint8Array.of(1)).finish()
    expect(reasonOf(() => parsePublicKeyBlob(negativeRsa))).toBe("corrupt")
  })

  it("survives random garbage with KeyErrors only", () => {
    let seed = 7
    const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff)
    for (let i = 0; i < 300; i++) {
      const bytes = Uint8Array.from({ length: next() % 80 }, () => next() & 0xff)
      // make some inputs start with a plausible type name
      if (i % 3 === 0) bytes.set(new SshWriter().string("ssh-rsa").finish().subarray(0, Math.min(11, bytes.length)))
      expect(keyError(() => parsePublicKeyBlob(bytes))).toBeInstanceOf(KeyError)
      expect(verifySignature(bytes, bytes, bytes)).toBe(false)
    }
  })
})

describe("signatures", () => {
  let keys: ReadonlyArray<SshPrivateKey>
  beforeAll(() => {
    const dsa = generateKeyPairSync("dsa", { modulusLength: 1024, divisorLength: 160 }).privateKey
    keys = [
      generatePrivateKey("ed25519", { comment: "ed" }),
      generatePrivateKey("ecdsa", { bits: 256 }),
      generatePrivateKey("ecdsa", { bits: 384 }),
      generatePrivateKey("ecdsa", { bits: 521 }),
      generatePrivateKey("rsa", { bits: 2048 }),
      parsePrivateKey(dsa.export({ type: "pkcs8", format: "pem" }) as string)
    ]
  })

  it("round-trips every key type and algorithm", () => {
    const data = enc("session id and userauth request")
    const seen: Array<string> = []
    for (const key of keys) {
      for (const algorithm of signatureAlgorithms(key.type)) {
        const sig = key.sign(algorithm, data)
        expect(parseSignatureBlob(sig).algorithm).toBe(algorithm)
        expect(verifySignature(key.publicKey.blob, sig, data)).toBe(true)
        expect(verifySignature(key.publicKey.blob, sig, data, algorithm)).toBe(true)
        seen.push(algorithm)
      }
    }
    expect(seen.sort()).toEqual(
      ["ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-256", "rsa-sha2-512", "ssh-dss", "ssh-ed25519", "ssh-rsa"].sort()
    )
  })

  it("rejects tampered data, tampered signatures, other keys and other algorithms", () => {
    const data = enc("data")
    for (const [i, key] of keys.entries()) {
      const other = keys[(i + 1) % keys.length]!
      const algorithm = signatureAlgorithms(key.type)[0]!
      const sig = key.sign(algorithm, data)
      expect(verifySignature(key.publicKey.blob, sig, enc("Data"))).toBe(false)
      const flipped = Uint8Array.from(sig)
      flipped[flipped.length - 3]! ^= 0x10
      expect(verifySignature(key.publicKey.blob, flipped, data)).toBe(false)
      expect(verifySignature(other.publicKey.blob, sig, data)).toBe(false)
      expect(verifySignature(key.publicKey.blob, sig, data, "ssh-other")).toBe(false)
      expect(verifySignature(key.publicKey.blob, sig.subarray(0, sig.length - 1), data)).toBe(false)
    }
  })

  it("does not accept an RSA signature under another RSA algorithm name", () => {
    const rsa = keys.find((k) => k.type === "ssh-rsa")!
    const data = enc("data")
    const sha256 = parseSignatureBlob(rsa.sign("rsa-sha2-256", data))
    const relabelled = new SshWriter().string("rsa-sha2-512").string(sha256.signature).finish()
    expect(verifySignature(rsa.publicKey.blob, relabelled, data)).toBe(false)
    expect(verifySignature(rsa.publicKey.blob, rsa.sign("rsa-sha2-256", data), data, "rsa-sha2-512")).toBe(false)
  })

  it("refuses to sign with an algorithm of another key type", () => {
    expect(reasonOf(() => keys[0]!.sign("rsa-sha2-256", enc("x")))).toBe("unsupported-key-type")
  })

  /** An SSHSIG envelope (PROTOCOL.sshsig): what was signed, and by which key. */
  function sshsig(armored: string, message: string) {
    const r = new SshReader(b64(armored.split("\n").filter((l) => l !== "" && !l.startsWith("-----")).join("")))
    expect(new TextDecoder().decode(r.bytes(6))).toBe("SSHSIG")
    r.uint32()
    const publicKey = r.string()
    const namespace = r.string()
    const reserved = r.string()
    const hashAlgorithm = r.string()
    const signature = r.string()
    const hash = createHash(new TextDecoder().decode(hashAlgorithm)).update(message).digest()
    const w = new SshWriter().raw(enc("SSHSIG")).string(namespace).string(reserved).string(hashAlgorithm).string(hash)
    return { publicKey, signature, signed: w.finish() }
  }
  const message = "This is a test, this is only a test"

  // OpenSSH regress/unittests/sshsig/testdata: signatures OpenSSH made, including with FIDO keys
  it("verifies signatures made by OpenSSH with ECDSA and security keys", () => {
    const cases = [
      `U1NIU0lHAAAAAQAAAGgAAAATZWNkc2Etc2hhMi1uaXN0cDI1NgAAAAhuaXN0cDI1NgAAAE
EE3sud88FV0N8FPspZSV7LWqj6uPPLRZiSsenNuEYAteWPyDgrZsWbLzXBuUJucepaCNuW
/QWgHBRbrjWj3ERm3AAAAAh1bml0dGVzdAAAAAAAAAAGc2hhNTEyAAAAZQAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAASgAAACEAycVNsTlE+XEZYyYiDxWZlliruf/pPMhEEMR/XLdQ
a4MAAAAhALQt+5gES7L3uKGptHB6UZQMuZ2WyI0C6FJs4v6AtMIU`,
      `U1NIU0lHAAAAAQAAAEoAAAAac2stc3NoLWVkMjU1MTlAb3BlbnNzaC5jb20AAAAgmxoNhd
Biu5zpuKUJgMgrhhI54b7OatE7Yz23Tf//sscAAAAEc3NoOgAAAAh1bml0dGVzdAAAAAAA
AAAGc2hhNTEyAAAAZwAAABpzay1zc2gtZWQyNTUxOUBvcGVuc3NoLmNvbQAAAEAi+7eTjW
/+LQ2M+sCD+KFtH1n7VFFJon/SZFsxODyV8cWTlFKj617Ys1Ur5TV6uaEXQhck8rBA2oQI
HTPANLIPARI0Vng=`,
      `U1NIU0lHAAAAAQAAAH8AAAAic2stZWNkc2Etc2hhMi1uaXN0cDI1NkBvcGVuc3NoLmNvbQ
AAAAhuaXN0cDI1NgAAAEEEoNVrmNFxPlXsTrKybBWLsclaHunkP6F5ss9qRBymcPZqMlno
b/hbO6GVhadyVZjrcmykOnb31GWGrkBPzr+DwAAAAARzc2g6AAAACHVuaXR0ZXN0AAAAAA
AAAAZzaGE1MTIAAAB3AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20A
AABIAAAAIHohGwyy8iKT3zwd1TYA9V/Ioo7h/3zCJUtyq/Qigt/HAAAAIGzidTwq7D/kFa
7Xjcp/KkdbIs4MfQpfAW/0OciajlpzARI0Vng=`
    ]
    for (const armored of cases) {
      const { publicKey, signature, signed } = sshsig(armored, message)
      expect(verifySignature(publicKey, signature, signed)).toBe(true)
      expect(verifySignature(publicKey, signature, concatBytes(signed, Uint8Array.of(0)))).toBe(false)
      const parsed = parseSignatureBlob(signature)
      if (parsed.algorithm.startsWith("sk-")) {
        expect(parsed.sk).toEqual({ flags: 1, counter: 0x12345678 })
        // the counter is covered by the signature
        const bumped = Uint8Array.from(signature)
        bumped[bumped.length - 1]! ^= 1
        expect(verifySignature(publicKey, bumped, signed)).toBe(false)
      }
    }
  })

  it("verifies security-key signatures built from PROTOCOL.u2f, bound to the application", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519")
    const raw = b64(publicKey.export({ format: "jwk" }).x!.replace(/-/g, "+").replace(/_/g, "/") + "=")
    const blob = (application: string) =>
      new SshWriter().string("sk-ssh-ed25519@openssh.com").string(raw).string(application).finish()
    const data = enc("challenge")
    const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest()
    const signed = concatBytes(sha256(enc("ssh:")), Uint8Array.of(0x05, 0, 0, 0, 9), sha256(data))
    const sig = new SshWriter()
      .string("sk-ssh-ed25519@openssh.com")
      .string(nodeSign(null, signed, privateKey))
      .byte(0x05)
      .uint32(9)
      .finish()
    expect(verifySignature(blob("ssh:"), sig, data)).toBe(true)
    expect(verifySignature(blob("ssh:other"), sig, data)).toBe(false)
    expect(parsePublicKeyBlob(blob("ssh:")).bits).toBe(256)
  })
})

describe("private keys", () => {
  // OpenSSH regress/unittests/sshkey/testdata/ed25519_1_pw (aes256-ctr, bcrypt, 16 rounds)
  const ed25519Pw = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABDKT56mBA
tXIMsWqmuuA2gdAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIFOG6kY7Rf4UtCFv
PwKgo/BztXck2xC4a2WyA34XtIwZAAAAoC13U47yfUOSZJePNUAwWXuFOk3aOKwPM5PMvK
0zwRnMZZjgn+tsMAYPwhsT3Mx3h5QzvVGFyFEqsiK7j4vAotD+LVQeBN5TwWbUBx4lnoGs
3iAfYVDakO/gNvVBDDGOqv5kdCc4cgn5HacjHQLKOAx6KzHe7JFn7uCywMdVVQjlpI6LHb
mHkaKiVX/C2oiRnsoe17HZ8Fxyt3vd1qNM8BE=
-----END OPENSSH PRIVATE KEY-----
`

  it("decrypts a key encrypted by OpenSSH", () => {
    const key = parsePrivateKey(ed25519Pw, "mekmitasdigoat")
    expect(key.type).toBe("ssh-ed25519")
    expect(key.comment).toBe("ED25519 test key #1")
    expect(formatPublicKeyLine(key.publicKey, "")).toBe("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFOG6kY7Rf4UtCFvPwKgo/BztXck2xC4a2WyA34XtIwZ")
    const sig = key.sign("ssh-ed25519", enc("x"))
    expect(verifySignature(key.publicKey.blob, sig, enc("x"))).toBe(true)
    expect(reasonOf(() => parsePrivateKey(ed25519Pw, "wrong"))).toBe("bad-passphrase")
    expect(reasonOf(() => parsePrivateKey(ed25519Pw))).toBe("passphrase-required")
    expect(reasonOf(() => parsePrivateKey(ed25519Pw, ""))).toBe("passphrase-required")
  })

  it("round-trips through the OpenSSH format, plain and with every cipher", () => {
    const key = generatePrivateKey("ecdsa", { bits: 384, comment: "round trip" })
    const plain = parsePrivateKey(encodeOpenSSHPrivateKey(key))
    expect(plain.publicKey.blob).toEqual(key.publicKey.blob)
    expect(plain.comment).toBe("round trip")
    for (const cipher of keyFileCipherNames) {
      const text = encodeOpenSSHPrivateKey(key, { passphrase: "secret", cipher, rounds: 2 })
      expect(text).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,70}\n)+-----END OPENSSH PRIVATE KEY-----\n$/)
      const back = parsePrivateKey(text, "secret")
      expect(back.publicKey.blob).toEqual(key.publicKey.blob)
      const sig = back.sign("ecdsa-sha2-nistp384", enc("m"))
      expect(verifySignature(key.publicKey.blob, sig, enc("m"))).toBe(true)
      expect(reasonOf(() => parsePrivateKey(text, "Secret"))).toBe("bad-passphrase")
      expect(reasonOf(() => parsePrivateKey(text))).toBe("passphrase-required")
    }
  })

  it("round-trips RSA and Ed25519 keys and reads the binary container directly", () => {
    for (const key of [generatePrivateKey("rsa", { bits: 1024 }), generatePrivateKey("ed25519")]) {
      const text = encodeOpenSSHPrivateKey(key)
      const fromBinary = parsePrivateKey(opensshBinary(text))
      expect(fromBinary.publicKey.blob).toEqual(key.publicKey.blob)
      const algorithm = signatureAlgorithms(key.type)[0]!
      expect(verifySignature(key.publicKey.blob, fromBinary.sign(algorithm, enc("z")), enc("z"))).toBe(true)
    }
  })

  it("reads PKCS#1, SEC1 and PKCS#8 PEM, plain and encrypted", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey
    const ec = generateKeyPairSync("ec", { namedCurve: "P-521" }).privateKey
    const ed = generateKeyPairSync("ed25519").privateKey
    const pems: Array<readonly [string, string | undefined, string]> = [
      [rsa.export({ type: "pkcs1", format: "pem" }) as string, undefined, "ssh-rsa"],
      [rsa.export({ type: "pkcs1", format: "pem", cipher: "aes-128-cbc", passphrase: "pw" }) as string, "pw", "ssh-rsa"],
      [ec.export({ type: "sec1", format: "pem" }) as string, undefined, "ecdsa-sha2-nistp521"],
      [ec.export({ type: "sec1", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" }) as string, "pw", "ecdsa-sha2-nistp521"],
      [ed.export({ type: "pkcs8", format: "pem" }) as string, undefined, "ssh-ed25519"],
      [ed.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" }) as string, "pw", "ssh-ed25519"],
      [rsa.export({ type: "pkcs8", format: "pem", cipher: "aes-256-cbc", passphrase: "pw" }) as string, "pw", "ssh-rsa"]
    ]
    for (const [pem, passphrase, type] of pems) {
      const key = parsePrivateKey(pem, passphrase)
      expect(key.type).toBe(type)
      const algorithm = signatureAlgorithms(type)[0]!
      expect(verifySignature(key.publicKey.blob, key.sign(algorithm, enc("p")), enc("p"))).toBe(true)
      if (passphrase !== undefined) {
        expect(reasonOf(() => parsePrivateKey(pem))).toBe("passphrase-required")
        expect(reasonOf(() => parsePrivateKey(pem, "wrong"))).toBe("bad-passphrase")
      }
      // a PEM key converts to the OpenSSH format unchanged
      expect(parsePrivateKey(encodeOpenSSHPrivateKey(key)).publicKey.blob).toEqual(key.publicKey.blob)
    }
    const unknownCipher = pems[1]![0].replace("DEK-Info: AES-128-CBC", "DEK-Info: FOO-128-CBC")
    expect(reasonOf(() => parsePrivateKey(unknownCipher, "pw"))).toBe("unsupported-cipher")
  })

  it("generates with ssh-keygen's defaults and refuses impossible sizes", () => {
    expect(generatePrivateKey("ecdsa").type).toBe("ecdsa-sha2-nistp256")
    expect(generatePrivateKey("ed25519", { comment: "me" })).toMatchObject({ type: "ssh-ed25519", comment: "me" })
    expect(reasonOf(() => generatePrivateKey("ecdsa", { bits: 255 }))).toBe("unsupported-key-type")
    expect(reasonOf(() => generatePrivateKey("rsa", { bits: 512 }))).toBe("unsupported-key-type")
  })
})

describe("malformed private keys", () => {
  let ed: SshPrivateKey
  let bin: Uint8Array
  beforeAll(() => {
    ed = generatePrivateKey("ed25519", { comment: "c" })
    bin = opensshBinary(encodeOpenSSHPrivateKey(ed))
  })

  /** Rebuilds an unencrypted container with the given pieces changed. */
  function container(change: { cipher?: string; kdf?: string; kdfOptions?: Uint8Array; count?: number; section?: Uint8Array; tail?: Uint8Array }) {
    const r = new SshReader(bin, 15)
    const cipher = r.ascii()
    const kdf = r.ascii()
    const kdfOptions = r.string()
    r.uint32()
    const publicBlob = r.string()
    const section = r.string()
    const w = new SshWriter().raw(bin.subarray(0, 15))
    w.string(change.cipher ?? cipher).string(change.kdf ?? kdf).string(change.kdfOptions ?? kdfOptions)
    w.uint32(change.count ?? 1).string(publicBlob).string(change.section ?? section)
    if (change.tail) w.raw(change.tail)
    return w.finish()
  }
  const section = () => {
    const r = new SshReader(bin, 15)
    r.ascii(), r.ascii(), r.string(), r.uint32(), r.string()
    return Uint8Array.from(r.string())
  }

  it("refuses every truncation with corrupt", () => {
    for (let n = 0; n < bin.length; n += 3) {
      const reason = reasonOf(() => parsePrivateKey(opensshPem(bin.subarray(0, n))))
      expect(reason).toBe("corrupt")
    }
  })

  it("tells check-value, padding and public-key mismatches apart from passphrase problems", () => {
    const badCheck = section()
    badCheck[0]! ^= 1
    expect(reasonOf(() => parsePrivateKey(container({ section: badCheck })))).toBe("corrupt")
    const badPadding = section()
    badPadding[badPadding.length - 1]! ^= 0x40
    expect(reasonOf(() => parsePrivateKey(container({ section: badPadding })))).toBe("corrupt")
    const otherKey = generatePrivateKey("ed25519", { comment: "c" })
    const foreign = new SshReader(opensshBinary(encodeOpenSSHPrivateKey(otherKey)), 15)
    foreign.ascii(), foreign.ascii(), foreign.string(), foreign.uint32(), foreign.string()
    expect(reasonOf(() => parsePrivateKey(container({ section: Uint8Array.from(foreign.string()) })))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(container({ tail: Uint8Array.of(0) })))).toBe("corrupt")
  })

  it("names unsupported ciphers, kdfs, key counts and round counts", () => {
    const kdfOptions = new SshWriter().string(new Uint8Array(16)).uint32(16).finish()
    expect(reasonOf(() => parsePrivateKey(container({ cipher: "twofish-cbc", kdf: "bcrypt", kdfOptions }), "p"))).toBe("unsupported-cipher")
    expect(reasonOf(() => parsePrivateKey(container({ cipher: "aes256-ctr", kdf: "scrypt", kdfOptions }), "p"))).toBe("unsupported-format")
    expect(reasonOf(() => parsePrivateKey(container({ count: 2 })))).toBe("unsupported-format")
    const endless = new SshWriter().string(new Uint8Array(16)).uint32(0xffffffff).finish()
    expect(reasonOf(() => parsePrivateKey(container({ cipher: "aes256-ctr", kdf: "bcrypt", kdfOptions: endless }), "p"))).toBe(
      "unsupported-format"
    )
    expect(reasonOf(() => parsePrivateKey(container({ kdf: "bcrypt" })))).toBe("corrupt")
  })

  it("reports a damaged authenticated section as a bad passphrase, as OpenSSH does", () => {
    for (const cipher of ["aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]) {
      const text = encodeOpenSSHPrivateKey(ed, { passphrase: "pw", cipher, rounds: 1 })
      const damaged = opensshBinary(text)
      damaged[damaged.length - 20]! ^= 1
      expect(reasonOf(() => parsePrivateKey(damaged, "pw"))).toBe("bad-passphrase")
    }
  })

  it("refuses garbage base64, foreign files and damaged PEM", () => {
    expect(reasonOf(() => parsePrivateKey("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn*NzaC1r\n-----END OPENSSH PRIVATE KEY-----\n"))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey("hello"))).toBe("unsupported-format")
    expect(reasonOf(() => parsePrivateKey(new Uint8Array(40)))).toBe("unsupported-format")
    expect(reasonOf(() => parsePrivateKey(formatPublicKeyLine(ed.publicKey)))).toBe("unsupported-format")
    // PuTTY files are read now (test/core/key-files.test.ts); a header alone is a truncated one
    expect(reasonOf(() => parsePrivateKey("PuTTY-User-Key-File-3: ssh-ed25519\n"))).toBe("corrupt")
    const spki = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }) as string
    expect(reasonOf(() => parsePrivateKey(spki))).toBe("unsupported-format")
    const rsaPem = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs1", format: "pem" }) as string
    const lines = rsaPem.split("\n")
    lines[3] = lines[3]!.replace(/[A-Z]/g, "A")
    expect(reasonOf(() => parsePrivateKey(lines.join("\n")))).toBe("corrupt")
    expect(reasonOf(() => parsePrivateKey(lines.slice(0, 4).concat(lines.slice(-2)).join("\n")))).toBe("corrupt")
    const x25519 = generateKeyPairSync("x25519").privateKey.export({ type: "pkcs8", format: "pem" }) as string
    expect(reasonOf(() => parsePrivateKey(x25519))).toBe("unsupported-key-type")
  })

  it("cannot encode a key object it did not make", () => {
    const impostor: SshPrivateKey = { ...ed }
    expect(reasonOf(() => encodeOpenSSHPrivateKey(impostor))).toBe("unsupported-format")
  })
})

describe("encrypted PKCS#8 with a wrong passphrase", () => {
  it("is a bad passphrase even when the wrong key's garbage decrypts with valid padding", () => {
    const { privateKey } = generateKeyPairSync("ed25519")
    const pem = privateKey.export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase: "right" }) as string
    // about one wrong passphrase in 300 makes OpenSSL's decoder say "unsupported" instead of "bad decrypt"
    let tricky: string | undefined
    for (let i = 0; i < 5000 && tricky === undefined; i++) {
      try {
        createPrivateKey({ key: pem, format: "pem", passphrase: `wrong-${i}` })
      } catch (e) {
        if (/DECODER routines::unsupported/.test((e as Error).message)) tricky = `wrong-${i}`
      }
    }
    expect(tricky).toBeDefined()
    expect(() => parsePrivateKey(pem, tricky)).toThrow(expect.objectContaining({ reason: "bad-passphrase" }))
    expect(() => parsePrivateKey(pem, "wrong")).toThrow(expect.objectContaining({ reason: "bad-passphrase" }))
  })
})
