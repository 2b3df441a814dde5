/**
 * Keys against the real ssh-keygen: every file it writes must parse to the key it describes
 * (same fingerprints, same passphrase behaviour), and every file we write must read back in it.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { KeyError, type KeyErrorReason } from "../../src/protocol/keys/errors.js"
import {
  encodeOpenSSHPrivateKey,
  generatePrivateKey,
  keyFileCipherNames,
  parsePrivateKey,
  type SshPrivateKey
} from "../../src/protocol/keys/privateKey.js"
import { fingerprint, formatPublicKeyLine, parsePublicKeyLine, signatureAlgorithms, verifySignature } from "../../src/protocol/keys/publicKey.js"
import { run, sshKeygen } from "../support/openssh.js"
import { describeWithPeers, requirePeer } from "../support/peers.js"

// PEM encryption in OpenSSL wants at least five characters
const PASSPHRASE = "correct horse"

interface Spec {
  readonly name: string
  readonly type: "ed25519" | "ecdsa" | "rsa" | "dsa"
  readonly bits?: number
  readonly sshType: string
}
const specs: ReadonlyArray<Spec> = [
  { name: "ed25519", type: "ed25519", sshType: "ssh-ed25519" },
  { name: "ecdsa-256", type: "ecdsa", bits: 256, sshType: "ecdsa-sha2-nistp256" },
  { name: "ecdsa-384", type: "ecdsa", bits: 384, sshType: "ecdsa-sha2-nistp384" },
  { name: "ecdsa-521", type: "ecdsa", bits: 521, sshType: "ecdsa-sha2-nistp521" },
  { name: "rsa-2048", type: "rsa", bits: 2048, sshType: "ssh-rsa" },
  { name: "rsa-3072", type: "rsa", bits: 3072, sshType: "ssh-rsa" },
  { name: "dsa", type: "dsa", sshType: "ssh-dss" }
]

interface Variant {
  readonly name: string
  /** ssh-keygen -p arguments that rewrite a plain OpenSSH key into this variant. */
  readonly rewrite: ReadonlyArray<string>
  readonly passphrase?: string
  /** OpenSSH files keep the comment; PEM and PKCS#8 have nowhere to put it. */
  readonly keepsComment: boolean
  readonly forEd25519: boolean
}
const variants: ReadonlyArray<Variant> = [
  { name: "OpenSSH", rewrite: [], keepsComment: true, forEd25519: true },
  { name: "OpenSSH encrypted", rewrite: ["-N", PASSPHRASE], passphrase: PASSPHRASE, keepsComment: true, forEd25519: true },
  { name: "PEM", rewrite: ["-N", "", "-m", "PEM"], keepsComment: false, forEd25519: false },
  { name: "PEM encrypted", rewrite: ["-N", PASSPHRASE, "-m", "PEM"], passphrase: PASSPHRASE, keepsComment: false, forEd25519: false },
  { name: "PKCS8", rewrite: ["-N", "", "-m", "PKCS8"], keepsComment: false, forEd25519: false },
  { name: "PKCS8 encrypted", rewrite: ["-N", PASSPHRASE, "-m", "PKCS8"], passphrase: PASSPHRASE, keepsComment: false, forEd25519: false }
]

function reasonOf(f: () => unknown): KeyErrorReason | "none" {
  try {
    f()
    return "none"
  } catch (e) {
    if (e instanceof KeyError) return e.reason
    throw e
  }
}

/** `ssh-keygen -l` output: "bits fingerprint comment (TYPE)". */
async function keygenFingerprint(path: string, hash: "sha256" | "md5") {
  const { stdout } = await sshKeygen(["-l", "-E", hash, "-f", path])
  const [bits, fp] = stdout.trim().split(" ")
  return { bits: Number(bits), fingerprint: fp! }
}

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "effect-ssh-keys-"))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describeWithPeers(["ssh-keygen"], "keys written by ssh-keygen", () => {
  const base = new Map<string, { path: string; publicLine: string; comment: string }>()

  beforeAll(async () => {
    for (const spec of specs) {
      const path = join(dir, `base-${spec.name}`)
      const comment = `interop ${spec.name}`
      await sshKeygen(["-q", "-t", spec.type, ...(spec.bits ? ["-b", String(spec.bits)] : []), "-N", "", "-C", comment, "-f", path])
      base.set(spec.name, { path, publicLine: (await readFile(`${path}.pub`, "utf8")).trim(), comment })
    }
  }, 120_000)

  /** A copy of the base key rewritten by `ssh-keygen -p` with `args`. */
  async function variantFile(spec: Spec, name: string, args: ReadonlyArray<string>): Promise<string> {
    const { path: basePath } = base.get(spec.name)!
    const path = join(dir, `${spec.name}-${name.replace(/\W+/g, "_")}`)
    await copyFile(basePath, path)
    if (args.length > 0) await sshKeygen(["-q", "-p", "-P", "", ...args, "-f", path])
    return path
  }

  for (const spec of specs) {
    for (const variant of variants) {
      if (spec.type === "ed25519" && !variant.forEd25519) continue
      it(`reads ${spec.name} as ${variant.name} with ssh-keygen's fingerprints`, async () => {
        const { path: basePath, publicLine, comment } = base.get(spec.name)!
        const path = await variantFile(spec, variant.name, variant.rewrite)
        const file = await readFile(path)
        if (variant.name.startsWith("PEM")) expect(file.toString()).toMatch(/-----BEGIN (RSA|EC|DSA) PRIVATE KEY-----/)
        if (variant.name.startsWith("PKCS8")) expect(file.toString()).toMatch(/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----/)

        const key = parsePrivateKey(file, variant.passphrase)
        const sha256 = await keygenFingerprint(`${basePath}.pub`, "sha256")
        const md5 = await keygenFingerprint(`${basePath}.pub`, "md5")
        expect(key.type).toBe(spec.sshType)
        expect(key.publicKey.bits).toBe(sha256.bits)
        expect(fingerprint(key.publicKey.blob)).toBe(sha256.fingerprint)
        expect(fingerprint(key.publicKey.blob, "md5")).toBe(md5.fingerprint)
        expect(key.publicKey.blob).toEqual(parsePublicKeyLine(publicLine).blob)
        if (variant.keepsComment) expect(key.comment).toBe(comment)

        for (const algorithm of signatureAlgorithms(key.type)) {
          expect(verifySignature(key.publicKey.blob, key.sign(algorithm, file), file, algorithm)).toBe(true)
        }
        if (variant.passphrase !== undefined) {
          expect(reasonOf(() => parsePrivateKey(file, "wrong passphrase"))).toBe("bad-passphrase")
          expect(reasonOf(() => parsePrivateKey(file))).toBe("passphrase-required")
        }
      })
    }
  }

  for (const specName of ["ed25519", "rsa-2048"]) {
    it(`reads ${specName} encrypted by ssh-keygen with each OpenSSH key cipher`, async () => {
      const spec = specs.find((s) => s.name === specName)!
      const expected = parsePublicKeyLine(base.get(spec.name)!.publicLine).blob
      for (const cipher of keyFileCipherNames) {
        const path = await variantFile(spec, `Z-${cipher}`, ["-N", PASSPHRASE, "-a", "4", "-Z", cipher])
        const file = await readFile(path)
        expect(file.toString(), cipher).toContain("-----BEGIN OPENSSH PRIVATE KEY-----")
        expect(parsePrivateKey(file, PASSPHRASE).publicKey.blob, cipher).toEqual(expected)
        expect(reasonOf(() => parsePrivateKey(file, "wrong passphrase")), cipher).toBe("bad-passphrase")
      }
    })
  }
})

describeWithPeers(["ssh-keygen"], "keys written by effect-ssh, read by ssh-keygen", () => {
  const ours: Array<readonly [string, () => SshPrivateKey]> = [
    ["ed25519", () => generatePrivateKey("ed25519", { comment: "ours ed25519" })],
    ["ecdsa-256", () => generatePrivateKey("ecdsa", { bits: 256, comment: "ours ecdsa-256" })],
    ["ecdsa-384", () => generatePrivateKey("ecdsa", { bits: 384, comment: "ours ecdsa-384" })],
    ["ecdsa-521", () => generatePrivateKey("ecdsa", { bits: 521, comment: "ours ecdsa-521" })],
    ["rsa-2048", () => generatePrivateKey("rsa", { bits: 2048, comment: "ours rsa-2048" })]
  ]

  async function writeKey(name: string, text: string): Promise<string> {
    const path = join(dir, `ours-${name}`)
    // ssh-keygen refuses private keys others can read
    await writeFile(path, text, { mode: 0o600 })
    return path
  }

  async function publicLineFromKeygen(path: string, passphrase: string): Promise<string> {
    const { stdout } = await sshKeygen(["-y", "-P", passphrase, "-f", path])
    return stdout.trim()
  }

  for (const [name, make] of ours) {
    it(`writes ${name} keys ssh-keygen reads, plain and encrypted`, async () => {
      const key = make()
      const expectedLine = formatPublicKeyLine(key.publicKey, key.comment)

      const plain = await writeKey(`${name}-plain`, encodeOpenSSHPrivateKey(key))
      expect(await publicLineFromKeygen(plain, "")).toBe(expectedLine)
      expect((await keygenFingerprint(plain, "sha256")).fingerprint).toBe(fingerprint(key.publicKey.blob))

      const encrypted = await writeKey(`${name}-encrypted`, encodeOpenSSHPrivateKey(key, { passphrase: PASSPHRASE }))
      expect(await publicLineFromKeygen(encrypted, PASSPHRASE)).toBe(expectedLine)
      const wrong = await run(requirePeer("ssh-keygen"), ["-y", "-P", "wrong passphrase", "-f", encrypted])
      expect(wrong.exitCode).not.toBe(0)
    })
  }

  it("writes keys ssh-keygen reads with each OpenSSH key cipher", async () => {
    const key = generatePrivateKey("ed25519", { comment: "ciphers" })
    for (const cipher of keyFileCipherNames) {
      const path = await writeKey(`cipher-${cipher}`, encodeOpenSSHPrivateKey(key, { passphrase: PASSPHRASE, cipher, rounds: 4 }))
      expect(await publicLineFromKeygen(path, PASSPHRASE), cipher).toBe(formatPublicKeyLine(key.publicKey))
    }
  })

  it("re-encodes a DSA key from ssh-keygen so that ssh-keygen reads it back", async () => {
    const source = join(dir, "dsa-source")
    await sshKeygen(["-q", "-t", "dsa", "-N", "", "-C", "dsa round trip", "-f", source])
    const key = parsePrivateKey(await readFile(source))
    const path = await writeKey("dsa-reencoded", encodeOpenSSHPrivateKey(key, { passphrase: PASSPHRASE }))
    expect(await publicLineFromKeygen(path, PASSPHRASE)).toBe((await readFile(`${source}.pub`, "utf8")).trim())
  })
})
