/**
 * The client when things go wrong, and the less common features: peers that stall or vanish,
 * keepalive, readyTimeout, the `sock` option, no-more-sessions, host-based authentication.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile, chown } from "node:fs/promises"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { afterAll, beforeAll, expect, it } from "vitest"
import { parsePrivateKey } from "../../src/protocol/keys/privateKey.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import type { ConnectOptions } from "../../src/SshClient.js"
import { generateKey } from "../support/openssh.js"
import { describeWithPeers, testUser, testUserRequirement } from "../support/peers.js"
import { startSshd } from "../support/sshd.js"
import type { Sshd } from "../support/sshd.js"

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(effect))
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** A TCP proxy in front of sshd that can be frozen: bytes stop flowing, sockets stay open. */
function startProxy(targetPort: number): Promise<{ port: number; freeze: () => void; close: () => void }> {
  const sockets: net.Socket[] = []
  let frozen = false
  const server = net.createServer((inbound) => {
    const outbound = net.connect(targetPort, "127.0.0.1")
    sockets.push(inbound, outbound)
    inbound.on("data", (d) => frozen || outbound.write(d))
    outbound.on("data", (d) => frozen || inbound.write(d))
    inbound.on("error", () => outbound.destroy())
    outbound.on("error", () => inbound.destroy())
  })
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        freeze: () => {
          frozen = true
        },
        close: () => {
          for (const s of sockets) s.destroy()
          server.close()
        }
      })
    )
  )
}

describeWithPeers(["sshd", "ssh-keygen", testUserRequirement], "client resilience and less common features", () => {
  let sshd: Sshd
  let dir: string
  let keyPath: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-resilience-"))
    const key = await generateKey(join(dir, "id_ed25519"), "ed25519")
    keyPath = key.privatePath
    sshd = await startSshd({ authorizedKeys: [key.publicLine], hostKeys: ["ed25519"] })
  }, 60_000)

  afterAll(async () => {
    await sshd?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const options = async (extra: Partial<ConnectOptions> = {}): Promise<ConnectOptions> => ({
    host: "127.0.0.1",
    port: sshd.port,
    username: sshd.user,
    auth: [SshAuth.privateKey(parsePrivateKey(await readFile(keyPath)))],
    hostVerifier: (k) => k.fingerprint === sshd.hostKeys[0]!.fingerprint,
    ...extra
  })

  it("readyTimeout: a server that accepts TCP and never speaks gives a typed timeout", async () => {
    const silent = net.createServer(() => {})
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()))
    try {
      const o = await options({ port: (silent.address() as net.AddressInfo).port, readyTimeout: "300 millis" })
      const error = await run(Effect.flip(SshClient.connect(o)))
      expect(error._tag).toBe("SshConnectError")
      expect(error._tag === "SshConnectError" && error.reason).toBe("timeout")
    } finally {
      silent.close()
    }
  })

  it("hostHash gives the verifier the key digest it asks for", async () => {
    let seen: string | undefined
    const o = await options({
      hostHash: "sha256",
      hostVerifier: (k) => {
        seen = k.hash
        return k.fingerprint === sshd.hostKeys[0]!.fingerprint
      }
    })
    await run(SshClient.connect(o))
    // the fingerprint is the same digest, base64 without padding
    expect(Buffer.from(seen!, "hex").toString("base64").replace(/=+$/, "")).toBe(sshd.hostKeys[0]!.fingerprint.slice(7))
  })

  it("a refused port gives SshConnectError(refused)", async () => {
    const probe = net.createServer()
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()))
    const port = (probe.address() as net.AddressInfo).port
    await new Promise<void>((r) => probe.close(() => r()))
    const error = await run(Effect.flip(SshClient.connect(await options({ port }))))
    expect(error._tag === "SshConnectError" && error.reason).toBe("refused")
  })

  it("a peer that is not an SSH server gives a clear transport error", async () => {
    const http = net.createServer((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"))
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()))
    try {
      const error = await run(Effect.flip(SshClient.connect(await options({ port: (http.address() as net.AddressInfo).port }))))
      expect(error._tag).toBe("SshTransportError")
    } finally {
      http.close()
    }
  })

  it("runs over a given duplex (sock), and keepalive detects a stalled peer", async () => {
    const proxy = await startProxy(sshd.port)
    try {
      const sock = net.connect(proxy.port, "127.0.0.1")
      await new Promise((r) => sock.once("connect", r))
      const o = await options({ sock, keepaliveInterval: "150 millis", keepaliveCountMax: 2 })
      await run(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect(o)
          expect(text((yield* ssh.exec("echo via-sock")).stdout)).toBe("via-sock\n")
          // keepalives are answered while the path works
          yield* Effect.sleep("500 millis")
          expect(text((yield* ssh.exec("echo still-up")).stdout)).toBe("still-up\n")
          proxy.freeze()
          const error = yield* Effect.flip(ssh.closed)
          expect(error.reason).toBe("timeout")
          expect(error.message).toMatch(/keepalive/)
        })
      )
    } finally {
      proxy.close()
    }
  })

  it("a connection that vanishes mid-command fails the command with a typed error", async () => {
    const proxy = await startProxy(sshd.port)
    try {
      const o = await options({ port: proxy.port })
      const error = await run(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect(o)
          const proc = yield* ssh.spawn("sleep 30")
          proxy.close()
          return yield* Effect.flip(proc.exit)
        })
      )
      expect(error._tag).toBe("SshChannelError")
      expect(error.reason).toBe("connection-closed")
    } finally {
      proxy.close()
    }
  })

  it("no-more-sessions@openssh.com: sshd refuses further sessions", async () => {
    const o = await options()
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        yield* ssh.noMoreSessions
        const error = yield* Effect.flip(ssh.exec("true"))
        expect(error._tag).toBe("SshChannelError")
      })
    )
  })

  it("closing the scope closes the connection; the server sees the disconnect", async () => {
    const o = await options()
    let closed = false
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(o)
        yield* Effect.forkDaemon(Effect.tap(ssh.closed, () => Effect.sync(() => (closed = true))))
      })
    )
    await new Promise((r) => setTimeout(r, 50))
    expect(closed).toBe(true)
  })

  it("host-based authentication with the client host's key", async () => {
    // sshd trusts (host, user) pairs from ~/.shosts and the client host key from ~/.ssh/known_hosts
    const hostKey = await generateKey(join(dir, "client_host_key"), "ed25519")
    const home = testUser.home
    await mkdir(join(home, ".ssh"), { recursive: true })
    await writeFile(join(home, ".shosts"), `localhost ${testUser.name}\n`)
    await writeFile(join(home, ".ssh", "known_hosts"), `localhost ${hostKey.publicLine}\n`)
    await chown(join(home, ".shosts"), 0, 0)
    const hb = await startSshd({
      user: testUser.name,
      hostKeys: ["ed25519"],
      config: {
        HostbasedAuthentication: "yes",
        HostbasedUsesNameFromPacketOnly: "yes",
        IgnoreRhosts: "no",
        IgnoreUserKnownHosts: "no",
        PubkeyAuthentication: "no",
        PasswordAuthentication: "no",
        KbdInteractiveAuthentication: "no"
      }
    })
    try {
      const key = parsePrivateKey(await readFile(hostKey.privatePath))
      const result = await run(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect({
            host: "127.0.0.1",
            port: hb.port,
            username: testUser.name,
            auth: [SshAuth.hostbased(key, "localhost", testUser.name)],
            hostVerifier: (k) => k.fingerprint === hb.hostKeys[0]!.fingerprint
          })
          return yield* ssh.exec("whoami")
        })
      )
      expect(text(result.stdout).trim()).toBe(testUser.name)
    } finally {
      await hb.stop()
      await rm(join(home, ".shosts"), { force: true })
      await rm(join(home, ".ssh", "known_hosts"), { force: true })
    }
  })
})
