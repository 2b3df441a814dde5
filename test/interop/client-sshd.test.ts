/**
 * The Effect client against OpenSSH's real sshd: every algorithm both support, every auth
 * method, session features, and a large transfer across rekeys.
 */
import { createHash, randomBytes } from "node:crypto"
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, expect, it } from "vitest"
import { parsePrivateKey } from "../../src/protocol/keys/privateKey.js"
import { SUPPORTED } from "../../src/protocol/transport/algorithms.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import type { ConnectOptions } from "../../src/SshClient.js"
import { generateKey, startAgent } from "../support/openssh.js"
import type { Agent } from "../support/openssh.js"
import { describeWithPeers, testUser, testUserRequirement } from "../support/peers.js"
import { allAlgorithmsConfig, openSshAlgorithms, startSshd, supportedHostKeySpecs } from "../support/sshd.js"
import type { Sshd } from "../support/sshd.js"

const run = <A, E>(effect: Effect.Effect<A, E, import("effect/Scope").Scope>) => Effect.runPromise(Effect.scoped(effect))
const text = (b: Uint8Array) => new TextDecoder().decode(b)

describeWithPeers(["sshd", "ssh", "ssh-keygen", "ssh-agent", "ssh-add", testUserRequirement], "client ↔ OpenSSH sshd", () => {
  let sshd: Sshd
  let dir: string
  const keys: Record<string, { path: string; publicLine: string }> = {}
  let theirs: Awaited<ReturnType<typeof openSshAlgorithms>>

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-client-"))
    await chmod(dir, 0o755) // the login user reads test files from here
    theirs = await openSshAlgorithms()
    const specs: Array<[string, "ed25519" | "ecdsa" | "rsa" | "dsa", number | undefined]> = [
      ["ed25519", "ed25519", undefined],
      ["ecdsa256", "ecdsa", 256],
      ["ecdsa384", "ecdsa", 384],
      ["ecdsa521", "ecdsa", 521],
      ["rsa", "rsa", 3072]
    ]
    if (theirs.keys.includes("ssh-dss")) specs.push(["dsa", "dsa", undefined])
    for (const [name, type, bits] of specs) {
      const k = await generateKey(join(dir, `id_${name}`), type, bits === undefined ? {} : { bits })
      keys[name] = { path: k.privatePath, publicLine: k.publicLine }
    }
    sshd = await startSshd({
      pam: true,
      hostKeys: await supportedHostKeySpecs(),
      authorizedKeys: Object.values(keys).map((k) => k.publicLine),
      config: { ...(await allAlgorithmsConfig()), AcceptEnv: "EFFECT_SSH_*", Subsystem: "sftp internal-sftp" }
    })
  }, 120_000)

  afterAll(async () => {
    await sshd?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const options = async (extra: Partial<ConnectOptions> = {}): Promise<ConnectOptions> => ({
    host: sshd.host,
    port: sshd.port,
    username: sshd.user,
    auth: [SshAuth.privateKey(parsePrivateKey(await readFile(keys.ed25519!.path)))],
    // verify against the keys this sshd really has, as a known_hosts file would
    hostVerifier: (key) => sshd.hostKeys.some((h) => h.fingerprint === key.fingerprint),
    ...extra
  })

  const execOnce = async (extra: Partial<ConnectOptions>, command = "echo ok") => {
    const o = await options(extra)
    return run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const result = yield* ssh.exec(command)
        return { result, algorithms: ssh.algorithms }
      })
    )
  }

  it("has algorithms in common with sshd for every category", () => {
    expect(SUPPORTED.kex.filter((k) => theirs.kex.includes(k)).length).toBeGreaterThan(5)
    expect(SUPPORTED.cipher.filter((k) => theirs.ciphers.includes(k)).length).toBeGreaterThan(5)
  })

  // OpenSSH 9.2 offers sntrup761x25519-sha512@openssh.com first; our default list must fall back cleanly.
  it("negotiates with the default lists", async () => {
    const { result, algorithms } = await execOnce({})
    expect(text(result.stdout)).toBe("ok\n")
    expect(result.code).toBe(0)
    expect(algorithms.strict).toBe(true)
  })

  for (const kex of SUPPORTED.kex) {
    it(`kex ${kex}`, async ({ skip }) => {
      if (!theirs.kex.includes(kex)) return skip(`sshd ${theirs.kex.length} kex methods do not include ${kex}`)
      const { result, algorithms } = await execOnce({ algorithms: { kex: [kex] } })
      expect(algorithms.kex).toBe(kex)
      expect(text(result.stdout)).toBe("ok\n")
    })
  }

  for (const cipher of SUPPORTED.cipher) {
    it(`cipher ${cipher}`, async ({ skip }) => {
      if (!theirs.ciphers.includes(cipher)) return skip(`sshd does not offer ${cipher}`)
      const { result, algorithms } = await execOnce({ algorithms: { cipher: [cipher], mac: SUPPORTED.mac } })
      expect(algorithms.cipherC2S).toBe(cipher)
      expect(text(result.stdout)).toBe("ok\n")
    })
  }

  for (const mac of SUPPORTED.mac) {
    it(`MAC ${mac}`, async ({ skip }) => {
      if (!theirs.macs.includes(mac)) return skip(`sshd does not offer ${mac}`)
      const { result, algorithms } = await execOnce({ algorithms: { cipher: ["aes128-ctr"], mac: [mac] } })
      expect(algorithms.macC2S).toBe(mac)
      expect(text(result.stdout)).toBe("ok\n")
    })
  }

  for (const hostKey of SUPPORTED.hostKey) {
    it(`host key ${hostKey}`, async ({ skip }) => {
      if (!theirs.hostKeyAlgorithms.includes(hostKey)) return skip(`sshd does not offer ${hostKey}`)
      if (hostKey.includes("-cert-v01@")) return skip("this sshd has no host certificates; see certificates.test.ts")
      const { algorithms } = await execOnce({ algorithms: { hostKey: [hostKey] } })
      expect(algorithms.hostKey).toBe(hostKey)
    })
  }

  // sshd offers only delayed compression (zlib@openssh.com); plain zlib is covered in memory
  it("compression zlib@openssh.com", async () => {
    const { result, algorithms } = await execOnce(
      { algorithms: { compression: ["zlib@openssh.com"] } },
      "head -c 3000000 /dev/zero | tr '\\0' a; echo; seq 1 20000 | tail -n 1"
    )
    expect(algorithms.compressionS2C).toBe("zlib@openssh.com")
    const out = text(result.stdout)
    expect(out.length).toBe(3000000 + 1 + 6)
    expect(out.endsWith("20000\n")).toBe(true)
  })

  for (const name of ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa", "dsa"]) {
    it(`publickey auth with ${name}`, async ({ skip }) => {
      if (!keys[name]) return skip(`this OpenSSH has no ${name} keys`)
      const key = parsePrivateKey(await readFile(keys[name]!.path))
      const { result } = await execOnce({ auth: [SshAuth.privateKey(key)] })
      expect(result.code).toBe(0)
    })
  }

  it("password auth", async () => {
    const { result } = await execOnce({ auth: [SshAuth.password(Redacted.make(testUser.password))] }, "whoami")
    expect(text(result.stdout).trim()).toBe(testUser.name)
  })

  it("keyboard-interactive auth answers the PAM prompt", async () => {
    const prompts: string[] = []
    const { result } = await execOnce(
      {
        auth: [
          SshAuth.keyboardInteractive((req) => {
            prompts.push(...req.prompts.map((p) => p.prompt))
            return Effect.succeed(req.prompts.map(() => testUser.password))
          })
        ]
      },
      "whoami"
    )
    expect(text(result.stdout).trim()).toBe(testUser.name)
    expect(prompts.join(" ")).toMatch(/password/i)
  })

  it("a wrong password fails with every method listed", async () => {
    const o = await options({ auth: [SshAuth.password(Redacted.make("wrong"))] })
    const error = await Effect.runPromise(Effect.scoped(Effect.flip(SshClient.connect(o))))
    expect(error._tag).toBe("SshAuthError")
    expect(error.message).toMatch(/password \(rejected\)/)
    expect(error._tag === "SshAuthError" && error.methodsLeft).toContain("publickey")
  })

  it("a rejected host key stops the connection", async () => {
    const o = await options({ hostVerifier: () => false })
    const error = await Effect.runPromise(Effect.scoped(Effect.flip(SshClient.connect(o))))
    expect(error._tag).toBe("SshTransportError")
    expect(error._tag === "SshTransportError" && error.reason).toBe("host-key-rejected")
  })

  it("agent auth through a real ssh-agent", async () => {
    let agent: Agent | undefined
    try {
      agent = await startAgent()
      await agent.add(keys.rsa!.path)
      await agent.add(keys.ed25519!.path)
      const { result } = await execOnce({ auth: [SshAuth.agent(agent.socket)] }, "echo agent")
      expect(text(result.stdout)).toBe("agent\n")
    } finally {
      await agent?.stop()
    }
  })

  it("exit codes, signals, stderr and env", async () => {
    const o = await options()
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const failed = yield* ssh.exec("echo oops >&2; exit 7")
        expect(failed.code).toBe(7)
        expect(text(failed.stderr)).toBe("oops\n")
        const killed = yield* ssh.exec("kill -TERM $$")
        expect(killed.signal).toBe("TERM")
        expect(killed.code).toBe(null)
        const env = yield* ssh.exec("echo $EFFECT_SSH_VAR", { env: { EFFECT_SSH_VAR: "from-env" } })
        expect(text(env.stdout)).toBe("from-env\n")
        const stdin = yield* ssh.exec("wc -c", { stdin: "12345" })
        expect(text(stdin.stdout).trim()).toBe("5")
      })
    )
  })

  it("pty with a shell, window change and a signal", async () => {
    const o = await options()
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const tty = yield* ssh.exec("tty; stty size", { pty: { rows: 30, cols: 100, term: "xterm" } })
        expect(text(tty.stdout)).toMatch(/\/dev\/pts\/\d+/)
        expect(text(tty.stdout)).toMatch(/30 100/)
        const shell = yield* ssh.shell({ pty: true })
        yield* shell.resize({ rows: 40, cols: 120 })
        yield* shell.write("stty size; exit 3\n")
        const out = yield* SshClient.collect(shell.stdout)
        expect(text(out)).toMatch(/40 120/)
        expect((yield* shell.exit).code).toBe(3)
      })
    )
  })

  it("a subsystem channel (sftp) answers", async () => {
    const o = await options()
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const sftp = yield* ssh.subsystem("sftp")
        // SSH_FXP_INIT version 3; the server answers SSH_FXP_VERSION (type 2)
        yield* sftp.write(Uint8Array.of(0, 0, 0, 5, 1, 0, 0, 0, 3))
        const first = yield* Stream.runHead(sftp.stdout)
        expect(first._tag === "Some" && first.value[4]).toBe(2)
      })
    )
  })

  it("64 MiB download and 16 MiB upload across rekeys, byte-exact", async () => {
    const file = join(dir, "big.bin")
    const data = randomBytes(64 * 1024 * 1024)
    await writeFile(file, data, { mode: 0o644 })
    const expected = createHash("sha256").update(data).digest("hex")
    const upload = randomBytes(16 * 1024 * 1024)
    const o = await options({ rekeyBytes: 8 * 1024 * 1024 })
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const proc = yield* ssh.spawn(`cat ${file}`)
        yield* proc.end
        const hash = createHash("sha256")
        let size = 0
        yield* Stream.runForEach(proc.stdout, (chunk) =>
          Effect.sync(() => {
            hash.update(chunk)
            size += chunk.length
          })
        )
        expect(size).toBe(data.length)
        expect(hash.digest("hex")).toBe(expected)
        const up = yield* ssh.exec("sha256sum", { stdin: upload })
        expect(text(up.stdout).split(" ")[0]).toBe(createHash("sha256").update(upload).digest("hex"))
      })
    )
  }, 120_000)

  it("an interrupted read loses no data", async () => {
    const o = await options()
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const proc = yield* ssh.spawn("sleep 0.3; printf abc; sleep 0.2; printf def")
        // gives up before anything arrives: the reader is interrupted while waiting
        const early = yield* Effect.timeout(Stream.runHead(proc.stdout), "50 millis").pipe(Effect.option)
        expect(early._tag).toBe("None")
        expect(text(yield* SshClient.collect(proc.stdout))).toBe("abcdef")
      })
    )
  })

  it("a slow reader holds the sender back: buffered data stays within the window and its early credit", async () => {
    const o = await options()
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        const proc = yield* ssh.spawn("head -c 33554432 /dev/zero")
        yield* Effect.sleep("500 millis")
        // nothing read yet: the server may have sent at most our window (2 MiB) and the half of
        // it counted as consumed on arrival
        expect(proc.state.stdout.buffered).toBeLessThanOrEqual(3 * 1024 * 1024)
        expect(proc.state.stdout.buffered).toBeGreaterThan(2 * 1024 * 1024)
        const out = yield* SshClient.collect(proc.stdout)
        expect(out.length).toBe(33554432)
      })
    )
  }, 60_000)
})
