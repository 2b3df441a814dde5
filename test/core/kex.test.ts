import { createHash, getDiffieHellman, randomBytes } from "node:crypto"
import { x25519 } from "@noble/curves/ed25519.js"
import { shake128 } from "@noble/hashes/sha3.js"
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js"
import { describe, expect, it } from "vitest"
import { deriveKey } from "../../src/protocol/kex/derive.js"
import {
  encodeKexInit,
  guessIsWrong,
  KEX_STRICT_C,
  KEX_STRICT_S,
  negotiate,
  parseKexInit,
  type KexInit
} from "../../src/protocol/kex/kexinit.js"
import {
  createClientKex,
  createServerKex,
  DEFAULT_KEX,
  KEX_METHODS,
  type ClientKex,
  type ClientKexResult,
  type ExchangeInputs,
  type KexOptions,
  type KexOutcome,
  type ServerHostKey,
  type ServerKex
} from "../../src/protocol/kex/methods.js"
import { DisconnectReason, ProtocolError, WireError } from "../../src/protocol/wire/errors.js"
import { SshReader } from "../../src/protocol/wire/reader.js"
import { concatBytes, message, SshWriter } from "../../src/protocol/wire/writer.js"

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"))
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const sha = (alg: string, ...parts: Uint8Array[]) => {
  const h = createHash(alg)
  for (const p of parts) h.update(p)
  return new Uint8Array(h.digest())
}
const str = (b: Uint8Array | string) => message((w) => w.string(b))
const mpint = (v: bigint) => message((w) => w.mpint(v))
const big = (b: Uint8Array) => (b.length === 0 ? 0n : BigInt("0x" + toHex(b)))
const modPow = (b: bigint, e: bigint, m: bigint) => {
  let r = 1n
  b %= m
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m
    b = (b * b) % m
    e >>= 1n
  }
  return r
}

/** Expects a typed ProtocolError (never a TypeError/RangeError) and returns it. */
function protocolError(fn: () => unknown, kind?: ProtocolError["kind"]): ProtocolError {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError)
    if (kind) expect((e as ProtocolError).kind).toBe(kind)
    return e as ProtocolError
  }
  throw new Error("expected a ProtocolError")
}

// ---------------------------------------------------------------------------------------------
// KEXINIT codec

const sampleInit: KexInit = {
  cookie: Uint8Array.from({ length: 16 }, (_, i) => i + 1),
  kex: ["mlkem768x25519-sha256", "curve25519-sha256", "ext-info-c", KEX_STRICT_C],
  hostKey: ["ssh-ed25519", "rsa-sha2-512"],
  cipherC2S: ["chacha20-poly1305@openssh.com", "aes128-ctr"],
  cipherS2C: ["aes256-gcm@openssh.com"],
  macC2S: ["hmac-sha2-256-etm@openssh.com"],
  macS2C: ["hmac-sha2-512"],
  compressionC2S: ["none", "zlib@openssh.com"],
  compressionS2C: ["none"],
  languagesC2S: [],
  languagesS2C: ["en-US"],
  firstKexPacketFollows: true
}

describe("KEXINIT codec", () => {
  it("round-trips every field and starts with message 20", () => {
    const payload = encodeKexInit(sampleInit)
    expect(payload[0]).toBe(20)
    expect(parseKexInit(payload)).toEqual(sampleInit)
    expect(parseKexInit(encodeKexInit({ ...sampleInit, firstKexPacketFollows: false })).firstKexPacketFollows).toBe(false)
  })

  it("lays the message out as RFC 4253 §7.1 says", () => {
    const payload = encodeKexInit(sampleInit)
    const r = new SshReader(payload)
    expect(r.byte()).toBe(20)
    expect(Array.from(r.bytes(16))).toEqual(Array.from(sampleInit.cookie))
    expect(r.ascii()).toBe("mlkem768x25519-sha256,curve25519-sha256,ext-info-c,kex-strict-c-v00@openssh.com")
    for (let i = 0; i < 9; i++) r.string()
    expect(r.byte()).toBe(1)
    expect(r.uint32()).toBe(0)
    r.end()
  })

  it("rejects every truncation with a typed error", () => {
    const payload = encodeKexInit(sampleInit)
    for (let n = 0; n < payload.length; n++) {
      expect(() => parseKexInit(payload.subarray(0, n)), `length ${n}`).toThrow(WireError)
    }
  })

  it("rejects trailing bytes", () => {
    expect(() => parseKexInit(concatBytes(encodeKexInit(sampleInit), Uint8Array.of(0)))).toThrow(WireError)
  })

  it("rejects bad name-lists", () => {
    for (const bad of ["a,,b", "a,", ",a", "a b", "caf\u00e9", "a\u0001"]) {
      const payload = message((w) => {
        w.byte(20).raw(new Uint8Array(16))
        w.string(Uint8Array.from(bad, (c) => c.charCodeAt(0)))
        for (let i = 0; i < 9; i++) w.string("")
        w.bool(false).uint32(0)
      })
      expect(() => parseKexInit(payload), bad).toThrow(WireError)
    }
  })

  it("rejects a name-list length beyond the message", () => {
    const payload = encodeKexInit(sampleInit).slice()
    payload.set([0xff, 0xff, 0xff, 0xff], 17)
    expect(() => parseKexInit(payload)).toThrow(WireError)
  })

  it("rejects another message number and a wrong cookie length", () => {
    const payload = encodeKexInit(sampleInit).slice()
    payload[0] = 21
    protocolError(() => parseKexInit(payload), "protocol")
    expect(() => encodeKexInit({ ...sampleInit, cookie: new Uint8Array(15) })).toThrow(WireError)
  })

  it("never throws an untyped error on garbage", () => {
    for (let i = 0; i < 300; i++) {
      const garbage = randomBytes(1 + (i % 120))
      garbage[0] = 20
      try {
        parseKexInit(garbage)
      } catch (e) {
        expect(e instanceof WireError || e instanceof ProtocolError).toBe(true)
      }
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Negotiation

const init = (over: Partial<KexInit>): KexInit => ({
  ...sampleInit,
  kex: ["curve25519-sha256"],
  hostKey: ["ssh-ed25519"],
  cipherC2S: ["aes128-ctr"],
  cipherS2C: ["aes128-ctr"],
  macC2S: ["hmac-sha2-256"],
  macS2C: ["hmac-sha2-256"],
  compressionC2S: ["none"],
  compressionS2C: ["none"],
  firstKexPacketFollows: false,
  ...over
})
const isAead = (c: string) => c.endsWith("@openssh.com") && (c.startsWith("chacha20") || c.includes("gcm"))

describe("negotiate", () => {
  it("takes the first client algorithm the server also offers, per direction", () => {
    const client = init({
      kex: ["ecdh-sha2-nistp256", "curve25519-sha256", "diffie-hellman-group14-sha256"],
      hostKey: ["rsa-sha2-512", "ssh-ed25519"],
      cipherC2S: ["aes256-ctr", "aes128-ctr"],
      cipherS2C: ["aes128-ctr", "aes256-ctr"],
      macC2S: ["hmac-sha2-512", "hmac-sha2-256"],
      macS2C: ["hmac-sha2-256", "hmac-sha2-512"],
      compressionC2S: ["zlib@openssh.com", "none"]
    })
    const server = init({
      kex: ["diffie-hellman-group14-sha256", "curve25519-sha256", "ecdh-sha2-nistp256"],
      hostKey: ["ssh-ed25519", "rsa-sha2-512"],
      cipherC2S: ["aes128-ctr", "aes256-ctr"],
      cipherS2C: ["aes256-ctr", "aes128-ctr"],
      macC2S: ["hmac-sha2-256", "hmac-sha2-512"],
      macS2C: ["hmac-sha2-512", "hmac-sha2-256"],
      compressionC2S: ["none", "zlib@openssh.com"]
    })
    expect(negotiate(client, server, isAead)).toEqual({
      kex: "ecdh-sha2-nistp256",
      hostKey: "rsa-sha2-512",
      cipherC2S: "aes256-ctr",
      cipherS2C: "aes128-ctr",
      macC2S: "hmac-sha2-512",
      macS2C: "hmac-sha2-256",
      compressionC2S: "zlib@openssh.com",
      compressionS2C: "none"
    })
  })

  it("needs no MAC with an AEAD cipher, even when the MAC lists share nothing", () => {
    const client = init({ cipherC2S: ["chacha20-poly1305@openssh.com"], cipherS2C: ["aes128-ctr"], macC2S: ["x"] })
    const server = init({ cipherC2S: ["chacha20-poly1305@openssh.com"], cipherS2C: ["aes128-ctr"], macC2S: ["y"] })
    const n = negotiate(client, server, isAead)
    expect(n.macC2S).toBe("")
    expect(n.macS2C).toBe("hmac-sha2-256")
  })

  it("never chooses ext-info or strict-kex pseudo-algorithms", () => {
    const client = init({ kex: ["ext-info-c", KEX_STRICT_C, "ext-info-s", KEX_STRICT_S, "curve25519-sha256"] })
    const server = init({ kex: ["ext-info-c", KEX_STRICT_C, "ext-info-s", KEX_STRICT_S, "curve25519-sha256"] })
    expect(negotiate(client, server, isAead).kex).toBe("curve25519-sha256")
    const e = protocolError(() => negotiate(init({ kex: ["ext-info-c", "a"] }), init({ kex: ["ext-info-c", "b"] }), isAead))
    expect(e.kind).toBe("no-common-algorithm")
  })

  it("names the category and both lists when nothing is common", () => {
    const client = init({ cipherS2C: ["aes128-ctr", "aes256-ctr"] })
    const server = init({ cipherS2C: ["3des-cbc", "blowfish-cbc"] })
    const e = protocolError(() => negotiate(client, server, isAead), "no-common-algorithm")
    expect(e.reason).toBe(DisconnectReason.KEY_EXCHANGE_FAILED)
    expect(e.message).toContain("server to client")
    expect(e.message).toContain("aes128-ctr, aes256-ctr")
    expect(e.message).toContain("3des-cbc, blowfish-cbc")
    expect(e.details).toEqual({ category: "cipherS2C", client: ["aes128-ctr", "aes256-ctr"], server: ["3des-cbc", "blowfish-cbc"] })
  })

  it("fails on host key and compression mismatches too", () => {
    expect(protocolError(() => negotiate(init({ hostKey: ["a"] }), init({ hostKey: ["b"] }), isAead)).details?.["category"]).toBe("hostKey")
    const c = init({ compressionS2C: ["zlib"] })
    expect(protocolError(() => negotiate(c, init({}), isAead)).details?.["category"]).toBe("compressionS2C")
  })

  it("judges a first-packet guess by the first kex and host key algorithms", () => {
    const base = init({ kex: ["a", "b"], hostKey: ["k1", "k2"] })
    expect(guessIsWrong(base, init({ kex: ["a"], hostKey: ["k1"] }))).toBe(false)
    expect(guessIsWrong(base, init({ kex: ["b", "a"], hostKey: ["k1"] }))).toBe(true)
    expect(guessIsWrong(base, init({ kex: ["a"], hostKey: ["k2", "k1"] }))).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// Key exchange methods

const inputs: ExchangeInputs = {
  clientVersion: "SSH-2.0-effect_ssh_test",
  serverVersion: "SSH-2.0-OpenSSH_9.9",
  clientKexInit: encodeKexInit(init({ cookie: new Uint8Array(16).fill(1) })),
  serverKexInit: encodeKexInit(init({ cookie: new Uint8Array(16).fill(2) }))
}

/** A host key whose "signature" is the signed data itself, so the test sees exactly what was signed. */
const fakeHostKey: ServerHostKey = {
  blob: message((w) => w.string("ssh-fake").string("public key bytes")),
  sign: (data) => message((w) => w.string("ssh-fake").string(data))
}

/** Shuttles messages between the two machines until both have a result. */
function run(client: ClientKex, server: ServerKex): { client: ClientKexResult; server: KexOutcome; transcript: Uint8Array[] } {
  const transcript: Uint8Array[] = []
  let toServer = [...client.start()]
  let clientResult: ClientKexResult | undefined
  let serverResult: KexOutcome | undefined
  for (let round = 0; round < 5 && !(clientResult && serverResult); round++) {
    const toClient: Uint8Array[] = []
    for (const p of toServer) {
      transcript.push(p)
      const step = server.receive(p)
      toClient.push(...step.send)
      serverResult ??= step.result
    }
    toServer = []
    for (const p of toClient) {
      transcript.push(p)
      const step = client.receive(p)
      toServer.push(...step.send)
      clientResult ??= step.result
    }
  }
  if (!clientResult || !serverResult) throw new Error("exchange did not finish")
  return { client: clientResult, server: serverResult, transcript }
}

const HASH_OF: Record<string, string> = {
  "mlkem768x25519-sha256": "sha256",
  "curve25519-sha256": "sha256",
  "curve25519-sha256@libssh.org": "sha256",
  "ecdh-sha2-nistp256": "sha256",
  "ecdh-sha2-nistp384": "sha384",
  "ecdh-sha2-nistp521": "sha512",
  "diffie-hellman-group-exchange-sha256": "sha256",
  "diffie-hellman-group-exchange-sha1": "sha1",
  "diffie-hellman-group14-sha256": "sha256",
  "diffie-hellman-group14-sha1": "sha1",
  "diffie-hellman-group1-sha1": "sha1",
  "diffie-hellman-group15-sha512": "sha512",
  "diffie-hellman-group16-sha512": "sha512",
  "diffie-hellman-group17-sha512": "sha512",
  "diffie-hellman-group18-sha512": "sha512"
}

describe("key exchange methods", () => {
  it("implements every required method and defaults to the secure ones, post-quantum first", () => {
    expect([...KEX_METHODS].sort()).toEqual(Object.keys(HASH_OF).sort())
    expect(DEFAULT_KEX).toEqual([
      "mlkem768x25519-sha256",
      "curve25519-sha256",
      "curve25519-sha256@libssh.org",
      "ecdh-sha2-nistp256",
      "ecdh-sha2-nistp384",
      "ecdh-sha2-nistp521",
      "diffie-hellman-group-exchange-sha256",
      "diffie-hellman-group16-sha512",
      "diffie-hellman-group18-sha512",
      "diffie-hellman-group14-sha256"
    ])
  })

  for (const method of Object.keys(HASH_OF)) {
    it(`${method}: client and server agree on K and H, and the server signs H`, () => {
      const { client, server } = run(createClientKex(method, inputs), createServerKex(method, inputs, fakeHostKey))
      expect(client.hash).toBe(HASH_OF[method])
      expect(toHex(client.K)).toBe(toHex(server.K))
      expect(toHex(client.H)).toBe(toHex(server.H))
      expect(client.H.length).toBe(createHash(HASH_OF[method]!).digest().length)
      expect(toHex(client.hostKey)).toBe(toHex(fakeHostKey.blob))
      expect(toHex(client.signature)).toBe(toHex(fakeHostKey.sign(client.H)))
      // K is a length-prefixed value that fills its whole buffer: a 32-byte string, or a minimal positive mpint
      const r = new SshReader(client.K)
      const body = r.string()
      r.end()
      if (method.startsWith("mlkem")) expect(body.length).toBe(32)
      else expect(body[0] === 0 ? (body[1]! & 0x80) !== 0 : (body[0]! & 0x80) === 0).toBe(true)
    })
  }

  it("gives different results on each run (fresh randomness)", () => {
    const a = run(createClientKex("curve25519-sha256", inputs), createServerKex("curve25519-sha256", inputs, fakeHostKey))
    const b = run(createClientKex("curve25519-sha256", inputs), createServerKex("curve25519-sha256", inputs, fakeHostKey))
    expect(toHex(a.client.H)).not.toBe(toHex(b.client.H))
  })

  it("rejects an unknown method with a kex error", () => {
    const e = protocolError(() => createClientKex("diffie-hellman-group99-sha7", inputs), "kex")
    expect(e.reason).toBe(DisconnectReason.KEY_EXCHANGE_FAILED)
    protocolError(() => createServerKex("ext-info-c", inputs, fakeHostKey), "kex")
  })
})

/** A deterministic source that hands out the given chunks in order. */
function scripted(...chunks: Uint8Array[]): KexOptions {
  const queue = [...chunks]
  return {
    randomBytes: (n) => {
      const next = queue.shift()
      if (!next || next.length !== n) throw new Error(`scripted randomness: asked ${n}, have ${next?.length}`)
      return next
    }
  }
}

/** The RFC 4253 §8 layout: H = HASH(V_C, V_S, I_C, I_S, K_S, fields..., K). */
function expectedH(alg: string, fields: Uint8Array, K: Uint8Array): Uint8Array {
  return sha(
    alg,
    str(inputs.clientVersion),
    str(inputs.serverVersion),
    str(inputs.clientKexInit),
    str(inputs.serverKexInit),
    str(fakeHostKey.blob),
    fields,
    K
  )
}

describe("known answers", () => {
  // RFC 7748 §6.1
  const alicePriv = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
  const alicePub = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
  const bobPriv = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
  const bobPub = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
  const shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

  it("curve25519-sha256 with the RFC 7748 keys: Q_C, Q_S, K (mpint) and H", () => {
    const { client, transcript } = run(
      createClientKex("curve25519-sha256", inputs, scripted(alicePriv)),
      createServerKex("curve25519-sha256", inputs, fakeHostKey, scripted(bobPriv))
    )
    expect(toHex(transcript[0]!)).toBe(toHex(concatBytes(Uint8Array.of(30), str(alicePub))))
    expect(toHex(transcript[1]!)).toBe(
      toHex(concatBytes(Uint8Array.of(31), str(fakeHostKey.blob), str(bobPub), str(fakeHostKey.sign(client.H))))
    )
    const K = mpint(big(shared))
    expect(toHex(client.K)).toBe(toHex(K))
    expect(toHex(client.H)).toBe(toHex(expectedH("sha256", concatBytes(str(alicePub), str(bobPub)), K)))
  })

  it("ecdh-sha2-nistp256 with the RFC 5903 §8.1 keys", () => {
    const i = hex("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433")
    const gi = hex(
      "04 DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180 5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3"
    )
    const r = hex("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53")
    const gr = hex(
      "04 D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63 56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB"
    )
    const girX = hex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
    const { client, transcript } = run(
      createClientKex("ecdh-sha2-nistp256", inputs, scripted(i)),
      createServerKex("ecdh-sha2-nistp256", inputs, fakeHostKey, scripted(r))
    )
    expect(toHex(transcript[0]!)).toBe(toHex(concatBytes(Uint8Array.of(30), str(gi))))
    const K = mpint(big(girX))
    expect(toHex(client.K)).toBe(toHex(K))
    expect(toHex(client.H)).toBe(toHex(expectedH("sha256", concatBytes(str(gi), str(gr)), K)))
  })

  it("diffie-hellman-group14-sha256 matches an independent modular exponentiation", () => {
    const p = big(getDiffieHellman("modp14").getPrime())
    const x = randomBytes(64)
    const y = randomBytes(64)
    const { client, transcript } = run(
      createClientKex("diffie-hellman-group14-sha256", inputs, scripted(x)),
      createServerKex("diffie-hellman-group14-sha256", inputs, fakeHostKey, scripted(y))
    )
    // private exponents are forced to full length
    const xv = big(x) | (1n << 511n)
    const yv = big(y) | (1n << 511n)
    const e = modPow(2n, xv, p)
    const f = modPow(2n, yv, p)
    expect(toHex(transcript[0]!)).toBe(toHex(concatBytes(Uint8Array.of(30), mpint(e))))
    const K = mpint(modPow(f, xv, p))
    expect(toHex(client.K)).toBe(toHex(K))
    expect(toHex(client.H)).toBe(toHex(expectedH("sha256", concatBytes(mpint(e), mpint(f)), K)))
  })

  it("diffie-hellman-group-exchange-sha256: request, group choice and RFC 4419 hash layout", () => {
    const x = randomBytes(64)
    const y = randomBytes(64)
    const { client, transcript } = run(
      createClientKex("diffie-hellman-group-exchange-sha256", inputs, { ...scripted(x), gex: { min: 2048, preferred: 3000, max: 8192 } }),
      createServerKex("diffie-hellman-group-exchange-sha256", inputs, fakeHostKey, scripted(y))
    )
    expect(toHex(transcript[0]!)).toBe(toHex(message((w) => w.byte(34).uint32(2048).uint32(3000).uint32(8192))))
    const p = big(getDiffieHellman("modp15").getPrime()) // smallest group of at least 3000 bits
    expect(toHex(transcript[1]!)).toBe(toHex(message((w) => w.byte(31).mpint(p).mpint(2n))))
    const xv = big(x) | (1n << 511n)
    const yv = big(y) | (1n << 511n)
    const e = modPow(2n, xv, p)
    const f = modPow(2n, yv, p)
    const K = mpint(modPow(f, xv, p))
    const fields = message((w) => w.uint32(2048).uint32(3000).uint32(8192).mpint(p).mpint(2n).mpint(e).mpint(f))
    expect(toHex(client.K)).toBe(toHex(K))
    expect(toHex(client.H)).toBe(toHex(expectedH("sha256", fields, K)))
  })

  it("group exchange: the client defaults to 2048/4096/8192 and the server picks by size", () => {
    const c = createClientKex("diffie-hellman-group-exchange-sha1", inputs)
    expect(toHex(c.start()[0]!)).toBe(toHex(message((w) => w.byte(34).uint32(2048).uint32(4096).uint32(8192))))
    const groupBits = (min: number, n: number, max: number) => {
      const s = createServerKex("diffie-hellman-group-exchange-sha1", inputs, fakeHostKey)
      const reply = s.receive(message((w) => w.byte(34).uint32(min).uint32(n).uint32(max))).send[0]!
      const r = new SshReader(reply, 1)
      return r.mpint().toString(2).length
    }
    expect(groupBits(1024, 1024, 8192)).toBe(2048)
    expect(groupBits(2048, 5000, 8192)).toBe(6144)
    expect(groupBits(2048, 8192, 8192)).toBe(8192)
    expect(groupBits(1024, 10000, 16384)).toBe(8192)
    expect(groupBits(2048, 3500, 4000)).toBe(3072) // nothing of the preferred size fits: the largest that does
    protocolError(() => groupBits(512, 768, 1024), "kex") // nothing that small is offered
    protocolError(() => groupBits(4096, 2048, 8192), "kex") // min > preferred
  })

  it("group exchange client: an unknown prime goes through the bigint path and still agrees", () => {
    // modp16's prime with generator 5 is not a group node:crypto knows, so the client computes with bigint.
    const p = big(getDiffieHellman("modp16").getPrime())
    const x = randomBytes(64)
    const client = createClientKex("diffie-hellman-group-exchange-sha256", inputs, scripted(x))
    client.start()
    const init = client.receive(message((w) => w.byte(31).mpint(p).mpint(5n))).send[0]!
    const xv = big(x) | (1n << 511n)
    const e = modPow(5n, xv, p)
    expect(toHex(init)).toBe(toHex(message((w) => w.byte(32).mpint(e))))
    const yv = big(randomBytes(64))
    const f = modPow(5n, yv, p)
    const { result } = client.receive(message((w) => w.byte(33).string(fakeHostKey.blob).mpint(f).string("sig")))
    const K = mpint(modPow(e, yv, p))
    expect(toHex(result!.K)).toBe(toHex(K))
    const fields = message((w) => w.uint32(2048).uint32(4096).uint32(8192).mpint(p).mpint(5n).mpint(e).mpint(f))
    expect(toHex(result!.H)).toBe(toHex(expectedH("sha256", fields, K)))
  })

  it("ML-KEM-768 matches the published accumulated FIPS 203 vectors (Go crypto/mlkem, 100 iterations)", () => {
    // Seeds, messages and random ciphertexts drawn from SHAKE-128(""); every output hashed with SHAKE-128.
    const source = shake128.create({})
    const out = shake128.create({ dkLen: 32 })
    for (let i = 0; i < 100; i++) {
      const { publicKey, secretKey } = ml_kem768.keygen(source.xof(64))
      out.update(publicKey)
      const { cipherText, sharedSecret } = ml_kem768.encapsulate(publicKey, source.xof(32))
      out.update(cipherText).update(sharedSecret)
      expect(toHex(ml_kem768.decapsulate(cipherText, secretKey))).toBe(toHex(sharedSecret))
      out.update(ml_kem768.decapsulate(source.xof(1088), secretKey))
    }
    expect(toHex(out.digest())).toBe("1114b1b6699ed191734fa339376afa7e285c9e6acf6ff0177d346696ce564415")
  })

  it("mlkem768x25519-sha256: C_INIT, S_REPLY and K = string(SHA-256(K_PQ || K_CL)) computed independently", () => {
    const seed = randomBytes(64)
    const clientX = randomBytes(32)
    const m = randomBytes(32)
    const serverX = randomBytes(32)
    const { client, transcript } = run(
      createClientKex("mlkem768x25519-sha256", inputs, scripted(seed, clientX)),
      createServerKex("mlkem768x25519-sha256", inputs, fakeHostKey, scripted(m, serverX))
    )
    const kem = ml_kem768.keygen(seed)
    const cInit = concatBytes(kem.publicKey, x25519.getPublicKey(clientX))
    expect(toHex(transcript[0]!)).toBe(toHex(concatBytes(Uint8Array.of(30), str(cInit))))
    const enc = ml_kem768.encapsulate(kem.publicKey, m)
    const sReply = concatBytes(enc.cipherText, x25519.getPublicKey(serverX))
    const reply = new SshReader(transcript[1]!, 1)
    reply.string()
    expect(toHex(reply.string())).toBe(toHex(sReply))
    const kCl = x25519.getSharedSecret(clientX, x25519.getPublicKey(serverX))
    const K = str(sha("sha256", enc.sharedSecret, kCl))
    expect(toHex(client.K)).toBe(toHex(K))
    expect(toHex(client.H)).toBe(toHex(expectedH("sha256", concatBytes(str(cInit), str(sReply)), K)))
  })
})

// ---------------------------------------------------------------------------------------------
// Key derivation

describe("deriveKey", () => {
  const K = mpint(0x1234567890abcdef1234567890abcdefn)
  const H = sha("sha256", Uint8Array.of(1, 2, 3))
  const sessionId = sha("sha256", Uint8Array.of(9))
  const letter = (c: string) => Uint8Array.of(c.charCodeAt(0))

  it("is HASH(K || H || letter || session_id), truncated", () => {
    const full = sha("sha256", K, H, letter("A"), sessionId)
    expect(toHex(deriveKey("sha256", K, H, sessionId, "A", 16))).toBe(toHex(full.subarray(0, 16)))
    expect(toHex(deriveKey("sha256", K, H, sessionId, "A", 32))).toBe(toHex(full))
    expect(toHex(deriveKey("sha256", K, H, sessionId, "B", 16))).not.toBe(toHex(full.subarray(0, 16)))
  })

  it("extends with HASH(K || H || K1 || K2 ...) beyond the hash size", () => {
    const k1 = sha("sha1", K, H, letter("C"), sessionId)
    const k2 = sha("sha1", K, H, k1)
    const k3 = sha("sha1", K, H, k1, k2)
    expect(toHex(deriveKey("sha1", K, H, sessionId, "C", 40))).toBe(toHex(concatBytes(k1, k2)))
    expect(toHex(deriveKey("sha1", K, H, sessionId, "C", 50))).toBe(toHex(concatBytes(k1, k2, k3).subarray(0, 50)))
    const s1 = sha("sha256", K, H, letter("E"), sessionId)
    const s2 = sha("sha256", K, H, s1)
    expect(toHex(deriveKey("sha256", K, H, sessionId, "E", 64))).toBe(toHex(concatBytes(s1, s2)))
  })
})

// ---------------------------------------------------------------------------------------------
// Malformed and out-of-order messages

function replyWith(value: Uint8Array, encode: (w: SshWriter, v: Uint8Array) => unknown = (w, v) => w.string(v)): Uint8Array {
  return message((w) => {
    w.byte(31).string(fakeHostKey.blob)
    encode(w, value)
    w.string("sig")
  })
}

function startedClient(method: string): ClientKex {
  const c = createClientKex(method, inputs)
  c.start()
  return c
}

describe("malformed and out-of-order messages", () => {
  it("curve25519: wrong-length and low-order server keys", () => {
    protocolError(() => startedClient("curve25519-sha256").receive(replyWith(new Uint8Array(31))), "kex")
    protocolError(() => startedClient("curve25519-sha256").receive(replyWith(new Uint8Array(33))), "kex")
    // the all-zero point gives an all-zero shared secret
    protocolError(() => startedClient("curve25519-sha256").receive(replyWith(new Uint8Array(32))), "kex")
    const server = createServerKex("curve25519-sha256", inputs, fakeHostKey)
    protocolError(() => server.receive(message((w) => w.byte(30).string(new Uint8Array(32)))), "kex")
  })

  it("ECDH: points off the curve, compressed or of the wrong size", () => {
    const offCurve = concatBytes(Uint8Array.of(4), new Uint8Array(64).fill(7))
    protocolError(() => startedClient("ecdh-sha2-nistp256").receive(replyWith(offCurve)), "kex")
    protocolError(() => startedClient("ecdh-sha2-nistp256").receive(replyWith(new Uint8Array(33).fill(2))), "kex")
    protocolError(() => startedClient("ecdh-sha2-nistp384").receive(replyWith(new Uint8Array(65).fill(4))), "kex")
    const server = createServerKex("ecdh-sha2-nistp521", inputs, fakeHostKey)
    protocolError(() => server.receive(message((w) => w.byte(30).string(Uint8Array.of(0)))), "kex")
  })

  it("DH: f out of range or negative", () => {
    const p = big(getDiffieHellman("modp14").getPrime())
    for (const f of [0n, 1n, p - 1n, p, p + 5n, -7n]) {
      protocolError(() => startedClient("diffie-hellman-group14-sha256").receive(replyWith(new Uint8Array(0), (w) => w.mpint(f))), "kex")
    }
    const server = createServerKex("diffie-hellman-group14-sha1", inputs, fakeHostKey)
    protocolError(() => server.receive(message((w) => w.byte(30).mpint(1n))), "kex")
  })

  it("mlkem768x25519: wrong part lengths and an invalid ML-KEM key", () => {
    protocolError(() => startedClient("mlkem768x25519-sha256").receive(replyWith(new Uint8Array(1088 + 31))), "kex")
    protocolError(() => startedClient("mlkem768x25519-sha256").receive(replyWith(new Uint8Array(1088))), "kex")
    const server = () => createServerKex("mlkem768x25519-sha256", inputs, fakeHostKey)
    const good = ml_kem768.keygen().publicKey
    protocolError(() => server().receive(message((w) => w.byte(30).string(concatBytes(good, new Uint8Array(31))))), "kex")
    protocolError(() => server().receive(message((w) => w.byte(30).string(good))), "kex")
    // a coefficient of 4095 >= q fails the FIPS 203 modulus check
    const unreduced = good.slice()
    unreduced[0] = 0xff
    unreduced[1] |= 0x0f
    protocolError(() => server().receive(message((w) => w.byte(30).string(concatBytes(unreduced, x25519.getPublicKey(randomBytes(32)))))), "kex")
  })

  it("group exchange: bad groups from the server", () => {
    const p1024 = big(getDiffieHellman("modp2").getPrime())
    const p2048 = big(getDiffieHellman("modp14").getPrime())
    const groupMsg = (p: bigint, g: bigint) => message((w) => w.byte(31).mpint(p).mpint(g))
    protocolError(() => startedClient("diffie-hellman-group-exchange-sha256").receive(groupMsg(p1024, 2n)), "kex")
    protocolError(() => startedClient("diffie-hellman-group-exchange-sha256").receive(groupMsg(p2048 + 1n, 2n)), "kex")
    protocolError(() => startedClient("diffie-hellman-group-exchange-sha256").receive(groupMsg(p2048, 1n)), "kex")
    protocolError(() => startedClient("diffie-hellman-group-exchange-sha256").receive(groupMsg(p2048, p2048 - 1n)), "kex")
    protocolError(() => startedClient("diffie-hellman-group-exchange-sha256").receive(groupMsg(-p2048, 2n)), "kex")
  })

  it("truncated, trailing-byte and wrong-number messages", () => {
    const good = run(createClientKex("curve25519-sha256", inputs), createServerKex("curve25519-sha256", inputs, fakeHostKey)).transcript[1]!
    for (let n = 1; n < good.length; n += 7) {
      protocolError(() => startedClient("curve25519-sha256").receive(good.subarray(0, n)), "kex")
    }
    protocolError(() => startedClient("curve25519-sha256").receive(concatBytes(good, Uint8Array.of(0))), "kex")
    protocolError(() => startedClient("curve25519-sha256").receive(Uint8Array.of(33)), "protocol")
    protocolError(() => startedClient("curve25519-sha256").receive(new Uint8Array(0)), "protocol")
    protocolError(() => createServerKex("curve25519-sha256", inputs, fakeHostKey).receive(good), "protocol")
    protocolError(() => createServerKex("diffie-hellman-group-exchange-sha256", inputs, fakeHostKey).receive(message((w) => w.byte(32).mpint(5n))), "protocol")
  })

  it("messages before start or after the end", () => {
    const method = "curve25519-sha256"
    protocolError(() => createClientKex(method, inputs).receive(Uint8Array.of(31)), "protocol")
    const client = createClientKex(method, inputs)
    const server = createServerKex(method, inputs, fakeHostKey)
    const reply = server.receive(client.start()[0]!).send[0]!
    client.receive(reply)
    protocolError(() => client.receive(reply), "protocol")
    protocolError(() => server.receive(Uint8Array.of(30, 0, 0, 0, 0)), "protocol")
    protocolError(() => client.start(), "kex")
    const gex = createClientKex("diffie-hellman-group-exchange-sha256", inputs)
    gex.start()
    protocolError(() => gex.receive(message((w) => w.byte(33).string("k").mpint(5n).string("s"))), "protocol")
  })

  it("garbage into every machine gives only ProtocolErrors", () => {
    for (const method of KEX_METHODS) {
      for (let i = 0; i < 15; i++) {
        const garbage = randomBytes(1 + (i * 37) % 200)
        garbage[0] = 30 + (i % 5)
        for (const receive of [
          (p: Uint8Array) => startedClient(method).receive(p),
          (p: Uint8Array) => createServerKex(method, inputs, fakeHostKey).receive(p)
        ]) {
          try {
            receive(garbage)
          } catch (e) {
            expect(e, `${method} ${toHex(garbage.subarray(0, 8))}`).toBeInstanceOf(ProtocolError)
          }
        }
      }
    }
  })
})
