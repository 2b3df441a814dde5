/**
 * Our client against our server, over TCP and in memory: the handler API (auth decisions,
 * session requests, exit status and signals, global requests) and the limits that protect
 * one connection from another.
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import { duplexPair } from "node:stream"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { execSession } from "../../src/node/ExecSession.js"
import { encodePtyRequest } from "../../src/protocol/connection/requests.js"
import { generatePrivateKey } from "../../src/protocol/keys/privateKey.js"
import { verifySignature } from "../../src/protocol/keys/publicKey.js"
import { SshReader } from "../../src/protocol/wire/reader.js"
import { message } from "../../src/protocol/wire/writer.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import type { ConnectOptions } from "../../src/SshClient.js"
import { AuthDecision } from "../../src/SshServer.js"
import type { AuthContext, PtyRequest, ServerProcess, ServerSession } from "../../src/SshServer.js"
import { passwordOrKeys, startServer } from "../support/ourServer.js"
import type { RunningServer } from "../support/ourServer.js"

const run = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.runPromise(Effect.scoped(effect))
const text = (b: Uint8Array) => new TextDecoder().decode(b)
const hostKey = generatePrivateKey("ed25519")
const clientKey = generatePrivateKey("ecdsa", { bits: 256 })
const PASSWORD = "correct horse"

/** A session handler with scripted commands, to observe exactly what the server API does. */
const scripted = (session: ServerSession) =>
  Effect.gen(function* () {
    const env: Record<string, string> = {}
    let pty: PtyRequest | undefined
    const command = (name: string, p: ServerProcess) =>
      Effect.gen(function* () {
        switch (name) {
          case "whoami":
            yield* p.write(`${session.username}\n`)
            return yield* p.exit(0)
          case "peer":
            yield* p.write(JSON.stringify({ address: session.connection.remoteAddress, port: session.connection.remotePort }))
            return yield* p.exit(0)
          case "env":
            yield* p.write(JSON.stringify({ env, pty: pty && { term: pty.term, rows: pty.rows, cols: pty.cols, modes: pty.modes } }))
            return yield* p.exit(0)
          case "upper": {
            const input = yield* SshClient.collect(p.input)
            yield* p.write(text(input).toUpperCase())
            return yield* p.exit(0)
          }
          case "fail":
            yield* p.writeStderr("bad things\n")
            return yield* p.exit(3)
          case "killed":
            return yield* p.exitSignal("KILL", { message: "boom" })
          case "big":
            for (let i = 0; i < 64; i++) yield* p.write(new Uint8Array(64 * 1024).fill(i))
            return yield* p.exit(0)
          default:
            yield* p.writeStderr(`unknown command ${name}\n`)
            return yield* p.exit(127)
        }
      }).pipe(Effect.ignore)
    yield* Stream.runForEach(session.requests, (req) => {
      switch (req._tag) {
        case "Env":
          env[req.name] = req.value
          return req.accept
        case "Pty":
          pty = req.pty
          return req.accept
        case "Exec":
          if (req.command === "refuse") return req.reject
          return Effect.flatMap(req.accept, (p) => Effect.forkScoped(command(req.command, p)))
        case "Subsystem":
          if (req.name !== "echo") return req.reject
          return Effect.flatMap(req.accept, (p) =>
            Effect.forkScoped(Effect.zipRight(Stream.runForEach(p.input, p.write), p.exit(0)).pipe(Effect.ignore))
          )
        default:
          return req.reject
      }
    }).pipe(Effect.ignore)
  })

/** Users with special policies: "mfa" needs publickey then password, "kbd2" two prompt rounds, "expired" a new password. */
const authenticate = (ctx: AuthContext) => {
  const base = passwordOrKeys(PASSWORD, [clientKey.publicKey])
  if (ctx.username === "mfa") {
    if (ctx.method === "publickey") return Effect.map(base(ctx), (d) => (d._tag === "Accept" ? AuthDecision.partial(["password"]) : d))
    if (ctx.method === "password" && ctx.completed.includes("publickey")) return base(ctx)
    return Effect.succeed(AuthDecision.reject({ methods: ctx.completed.includes("publickey") ? ["password"] : ["publickey"] }))
  }
  if (ctx.username === "kbd2" && ctx.method === "keyboard-interactive") {
    return Effect.gen(function* () {
      const [a] = yield* ctx.prompt([{ prompt: "first: ", echo: true }], { name: "round 1" })
      const [b, c] = yield* ctx.prompt(
        [
          { prompt: "second: ", echo: false },
          { prompt: "third: ", echo: false }
        ],
        { instructions: "round 2" }
      )
      return a === "1" && b === "2" && c === "3" ? AuthDecision.accept : AuthDecision.reject()
    })
  }
  if (ctx.username === "expired" && ctx.method === "password") {
    if (ctx.newPassword === undefined) return Effect.succeed(AuthDecision.passwordChange("your password has expired"))
    return Effect.succeed(Redacted.value(ctx.newPassword) === "new-pw" ? AuthDecision.accept : AuthDecision.reject())
  }
  return base(ctx)
}

describe("our client ↔ our server", () => {
  let srv: RunningServer
  const globalRequests: string[] = []

  beforeAll(async () => {
    srv = await startServer({
      hostKeys: [hostKey],
      authenticate,
      onSession: scripted,
      onGlobalRequest: (r) =>
        Effect.sync(() => {
          globalRequests.push(r.name)
          return r.name === "echo@test" ? r.data : false
        })
    })
  })
  afterAll(() => srv?.stop())

  const options = (extra: Partial<ConnectOptions> = {}): ConnectOptions => ({
    port: srv.port,
    username: "alice",
    auth: [SshAuth.password(Redacted.make(PASSWORD))],
    hostVerifier: (key) => key.fingerprint === srv.server.hostKeys[0]!.fingerprint,
    ...extra
  })

  it("runs commands over TCP: output, stdin, stderr, exit status and exit signal", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(options())
        const who = yield* ssh.exec("whoami")
        expect(text(who.stdout)).toBe("alice\n")
        expect(who.code).toBe(0)
        // the peer as the server's socket sees it (the server reads through a socket it took over)
        const peer = JSON.parse(text((yield* ssh.exec("peer")).stdout))
        expect(peer.address).toBe("127.0.0.1")
        expect(peer.port).toBeGreaterThan(0)
        const upper = yield* ssh.exec("upper", { stdin: "shout this" })
        expect(text(upper.stdout)).toBe("SHOUT THIS")
        const failed = yield* ssh.exec("fail")
        expect(failed).toMatchObject({ code: 3, signal: null })
        expect(text(failed.stderr)).toBe("bad things\n")
        const killed = yield* ssh.exec("killed")
        expect(killed).toMatchObject({ code: null, signal: "KILL" })
        const big = yield* ssh.exec("big")
        expect(big.stdout.length).toBe(64 * 64 * 1024)
        expect(big.stdout[64 * 1024 * 63]).toBe(63)
      })
    )
  })

  it("passes pty modes and env to the handler; refused requests fail on the client", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(options())
        const r = yield* ssh.exec("env", { env: { LANG: "C.UTF-8" }, pty: { term: "xterm", rows: 33, cols: 101, modes: { ECHO: 0, VINTR: 3 } } })
        expect(JSON.parse(text(r.stdout))).toEqual({
          env: { LANG: "C.UTF-8" },
          pty: { term: "xterm", rows: 33, cols: 101, modes: { ECHO: 0, VINTR: 3 } }
        })
        const refused = yield* Effect.flip(ssh.exec("refuse"))
        expect(refused.reason).toBe("request-failed")
        const shell = yield* Effect.flip(ssh.shell())
        expect(shell.reason).toBe("request-failed")
        const sub = yield* ssh.subsystem("echo")
        yield* sub.write("ping")
        yield* sub.end
        expect(text(yield* SshClient.collect(sub.stdout))).toBe("ping")
      })
    )
  })

  it("several connections moving data at once each get their own bytes (one read buffer serves every socket)", async () => {
    const payloads = [1, 2, 3, 4].map((n) => randomBytes(3 * 1024 * 1024 + n * 4099))
    const echoed = await run(
      Effect.forEach(
        payloads,
        (payload) =>
          Effect.gen(function* () {
            const ssh = yield* SshClient.connect(options())
            const sub = yield* ssh.subsystem("echo")
            // written in uneven pieces while the echo streams back, so reads of both sides interleave
            const writer = Effect.gen(function* () {
              for (let at = 0; at < payload.length; at += 40_000) yield* sub.write(payload.subarray(at, at + 40_000))
              yield* sub.end
            })
            const [, back] = yield* Effect.all([writer, SshClient.collect(sub.stdout)], { concurrency: 2 })
            return back
          }),
        { concurrency: "unbounded" }
      )
    )
    echoed.forEach((back, i) => expect(Buffer.from(back).equals(payloads[i]!)).toBe(true))
  })

  it("serves a connection over an in-memory duplex pair", async () => {
    const [ours, theirs] = duplexPair()
    await Effect.runPromise(srv.server.handleConnection(ours))
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(options({ sock: theirs }))
        const r = yield* ssh.exec("upper", { stdin: "in memory" })
        expect(text(r.stdout)).toBe("IN MEMORY")
      })
    )
  })

  it("publickey auth: the core checks the signature, the handler only authorizes the key", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(options({ auth: [SshAuth.privateKey(clientKey)] }))
        expect(text((yield* ssh.exec("whoami")).stdout)).toBe("alice\n")
      })
    )
    const other = generatePrivateKey("ed25519")
    const error = await run(Effect.flip(SshClient.connect(options({ auth: [SshAuth.privateKey(other)] }))))
    expect(error._tag).toBe("SshAuthError")
  })

  it("multi-factor: publickey gives partial success, then password completes", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(
          options({ username: "mfa", auth: [SshAuth.privateKey(clientKey), SshAuth.password(Redacted.make(PASSWORD))] })
        )
        expect(text((yield* ssh.exec("whoami")).stdout)).toBe("mfa\n")
      })
    )
    // the password alone is not enough
    const error = await run(Effect.flip(SshClient.connect(options({ username: "mfa" }))))
    expect(error._tag).toBe("SshAuthError")
  })

  it("keyboard-interactive with two rounds of prompts", async () => {
    const rounds: string[] = []
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(
          options({
            username: "kbd2",
            auth: [
              SshAuth.keyboardInteractive((req) => {
                rounds.push(`${req.name}|${req.instructions}|${req.prompts.map((p) => `${p.prompt}${p.echo}`).join(",")}`)
                return Effect.succeed(req.prompts.length === 1 ? ["1"] : ["2", "3"])
              })
            ]
          })
        )
        expect(text((yield* ssh.exec("whoami")).stdout)).toBe("kbd2\n")
      })
    )
    expect(rounds).toEqual(["round 1||first: true", "|round 2|second: false,third: false"])
  })

  it("password change request", async () => {
    let prompt = ""
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(
          options({
            username: "expired",
            auth: [
              SshAuth.password(Redacted.make("old-pw"), (p) => {
                prompt = p
                return Effect.succeed(Redacted.make("new-pw"))
              })
            ]
          })
        )
        expect((yield* ssh.exec("whoami")).code).toBe(0)
      })
    )
    expect(prompt).toBe("your password has expired")
  })

  it("global requests reach the application; no-more-sessions is honoured", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(options())
        const driver = (ssh as unknown as { driver: import("../../src/internal/driver.js").Driver }).driver
        const reply = yield* Effect.async<{ ok: boolean; data: string }>((resume) =>
          driver.globalRequest("echo@test", new TextEncoder().encode("payload"), (ok, data) => resume(Effect.succeed({ ok, data: text(data) })))
        )
        expect(reply).toEqual({ ok: true, data: "payload" })
        const refused = yield* Effect.async<boolean>((resume) => driver.globalRequest("other@test", undefined, (ok) => resume(Effect.succeed(ok))))
        expect(refused).toBe(false)
        yield* ssh.noMoreSessions
        const error = yield* Effect.flip(ssh.exec("whoami"))
        expect(error.reason).toBe("open-failed")
      })
    )
    expect(globalRequests).toEqual(["echo@test", "other@test"])
  })

  it("hostkeys-prove-00@openssh.com: signatures verify; malformed requests are refused, the connection goes on", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect(options())
        const driver = (ssh as unknown as { driver: import("../../src/internal/driver.js").Driver }).driver
        const prove = (data: Uint8Array) =>
          Effect.async<{ ok: boolean; data: Uint8Array }>((resume) =>
            driver.globalRequest("hostkeys-prove-00@openssh.com", data, (ok, reply) => resume(Effect.succeed({ ok, data: reply })))
          )
        const blob = hostKey.publicKey.blob
        const good = yield* prove(message((w) => w.string(blob)))
        expect(good.ok).toBe(true)
        const signature = new SshReader(good.data).string()
        const signed = message((w) => w.string("hostkeys-prove-00@openssh.com").string(driver.endpoint.transport.sessionId!).string(blob))
        expect(verifySignature(blob, signature, signed, "ssh-ed25519")).toBe(true)
        for (const bad of [Uint8Array.of(0, 0, 1), Uint8Array.of(0, 0, 0, 9, 1, 2), message((w) => w.string(clientKey.publicKey.blob))]) {
          expect((yield* prove(bad)).ok).toBe(false)
        }
        expect((yield* ssh.exec("whoami")).code).toBe(0)
      })
    )
  })

  it("execSession: a client signal reaches the process group; a closed connection leaves no process behind", async () => {
    const exec = await startServer({ hostKeys: [hostKey], authenticate, onSession: execSession() })
    try {
      await run(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect(options({ port: exec.port }))
          // not exec'd: the signal must reach sleep through the process group, as with sshd's killpg
          const proc = yield* ssh.spawn("echo started; sleep 30")
          const first = yield* Stream.runHead(proc.stdout)
          expect(first._tag === "Some" && text(first.value)).toBe("started\n")
          yield* proc.signal("INT")
          const exit = yield* proc.exit
          expect(exit).toMatchObject({ code: null, signal: "INT" })
        })
      )
      // a closed connection hangs up on whole sessions, pty or not: nothing is left running
      const running = () => spawnSync("pgrep", ["-f", "sleep 98[67]"]).stdout.toString().trim()
      await run(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect(options({ port: exec.port }))
          const plain = yield* ssh.spawn("echo a; sleep 986; true")
          const tty = yield* ssh.spawn("echo b; sleep 987; true", { pty: true })
          yield* Stream.runHead(plain.stdout)
          yield* Stream.runHead(tty.stdout)
          expect(running().split("\n").length).toBeGreaterThanOrEqual(2)
        })
      )
      const deadline = Date.now() + 3000
      while (running() !== "" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      expect(running()).toBe("")
    } finally {
      await exec.stop()
    }
  })
})

/** Opens a raw TCP connection and records what the server sends until it closes. */
function rawConnection(port: number, send?: Uint8Array) {
  const socket = net.connect({ host: "127.0.0.1", port })
  const chunks: Buffer[] = []
  const opened = Date.now()
  socket.on("data", (c: Buffer) => chunks.push(c))
  socket.on("error", () => {})
  if (send) socket.write(send)
  const closed = new Promise<{ afterMs: number; received: Buffer }>((resolve) =>
    socket.on("close", () => resolve({ afterMs: Date.now() - opened, received: Buffer.concat(chunks) }))
  )
  return { socket, closed, received: () => Buffer.concat(chunks) }
}

describe("session handler lifetime", () => {
  const connectAlice = (srv: RunningServer) =>
    SshClient.connect({
      port: srv.port,
      username: "alice",
      auth: [SshAuth.password(Redacted.make(PASSWORD))],
      hostVerifier: (key) => key.fingerprint === srv.server.hostKeys[0]!.fingerprint
    })

  it("forEachRequest takes the requests in order, as Stream.runForEach over requests does, and ends with the channel", async () => {
    const seen: string[] = []
    let ended = 0
    const srv = await startServer({
      hostKeys: [hostKey],
      authenticate,
      onSession: (session) => {
        const env: Record<string, string> = {}
        return session
          .forEachRequest((req) => {
            seen.push(req._tag)
            switch (req._tag) {
              case "Env":
                env[req.name] = req.value
                return req.accept
              case "Exec":
                if (req.command === "refuse") return req.reject
                return Effect.flatMap(req.accept, (p) => Effect.forkScoped(Effect.ignore(Effect.zipRight(p.write(`${req.command}=${env[req.command] ?? ""}`), p.exit(0)))))
              default:
                return req.reject
            }
          })
          .pipe(Effect.ignore, Effect.ensuring(Effect.sync(() => ended++)))
      }
    })
    try {
      await run(
        Effect.gen(function* () {
          const ssh = yield* connectAlice(srv)
          const shown = yield* ssh.exec("GREETING", { env: { GREETING: "hello" } })
          expect(text(shown.stdout)).toBe("GREETING=hello")
          const refused = yield* Effect.either(ssh.exec("refuse"))
          expect(refused._tag).toBe("Left")
          for (let i = 0; i < 100 && ended < 2; i++) yield* Effect.sleep("10 millis")
        })
      )
      expect(seen).toEqual(["Env", "Exec", "Exec"])
      expect(ended).toBe(2)
    } finally {
      await srv.stop()
    }
  })

  it("a channel closed by the client interrupts its session handler, whose finalizers run", async () => {
    const events: string[] = []
    const srv = await startServer({
      hostKeys: [hostKey],
      authenticate,
      onSession: () =>
        Effect.gen(function* () {
          yield* Effect.addFinalizer(() => Effect.sync(() => events.push("finalized")))
          events.push("started")
          return yield* Effect.never
        })
    })
    try {
      await run(
        Effect.gen(function* () {
          const ssh = yield* connectAlice(srv)
          const channel = yield* Effect.scoped(
            Effect.gen(function* () {
              const channel = yield* ssh.openSession
              yield* Effect.sleep("50 millis")
              expect(events).toEqual(["started"])
              return channel
            })
          )
          // the scope closed the channel; the server saw the close and ended the handler
          yield* channel.exit.pipe(Effect.ignore)
          for (let i = 0; i < 100 && events.length < 2; i++) yield* Effect.sleep("10 millis")
          expect(events).toEqual(["started", "finalized"])
          expect((yield* srv.server.stats).connections).toBe(1)
        })
      )
    } finally {
      await srv.stop()
    }
  })
})

describe("server limits", () => {
  let srv: RunningServer
  const passwordsSeen: string[] = []

  beforeAll(async () => {
    srv = await startServer({
      hostKeys: [hostKey],
      loginGraceTime: "800 millis",
      maxStartups: 3,
      authenticate: (ctx) => {
        if (ctx.method === "password") passwordsSeen.push(Redacted.value(ctx.password))
        return passwordOrKeys(PASSWORD)(ctx)
      },
      onSession: scripted
    })
  })
  afterAll(() => srv?.stop())

  const connect = (auth = [SshAuth.password(Redacted.make(PASSWORD))]) =>
    SshClient.connect({ port: srv.port, username: "bob", auth, hostVerifier: SshClient.acceptAnyHostKey })

  it("the 7th authentication attempt disconnects with NO_MORE_AUTH_METHODS_AVAILABLE", async () => {
    passwordsSeen.length = 0
    const wrong = Array.from({ length: 7 }, (_, i) => SshAuth.password(Redacted.make(`wrong-${i + 1}`)))
    const error = await run(Effect.flip(connect(wrong)))
    expect(error._tag).toBe("SshTransportError")
    expect(error._tag === "SshTransportError" && error.code).toBe(14)
    expect(error.message).toMatch(/too many authentication failures/)
    // six attempts were judged; the seventh was refused without asking the handler
    expect(passwordsSeen).toEqual(["wrong-1", "wrong-2", "wrong-3", "wrong-4", "wrong-5", "wrong-6"])
  })

  it("a connection that never finishes the key exchange is closed at the login grace time", async () => {
    const raw = rawConnection(srv.port, new TextEncoder().encode("SSH-2.0-stalling_client\r\n"))
    const { afterMs, received } = await raw.closed
    expect(afterMs).toBeGreaterThanOrEqual(700)
    expect(afterMs).toBeLessThan(5000)
    expect(received.toString("latin1")).toMatch(/^SSH-2\.0-effect_ssh/)
    // the DISCONNECT goes out in the clear before kex: its text is readable
    expect(received.toString("latin1")).toMatch(/login grace time of 0\.8 s exceeded/)
  })

  it("a flood of unauthenticated connections does not starve an authenticated session", async () => {
    await run(
      Effect.gen(function* () {
        const ssh = yield* connect()
        const flood = Array.from({ length: 8 }, () => rawConnection(srv.port))
        yield* Effect.sleep("200 millis")
        // only maxStartups (3) wait for their handshake; the others were dropped at once
        const dropped = flood.filter((f) => f.socket.destroyed || f.received().length === 0)
        expect(dropped.length).toBe(5)
        const r = yield* ssh.exec("upper", { stdin: "still served" })
        expect(text(r.stdout)).toBe("STILL SERVED")
        // the pre-auth slots free up at the grace time, then new clients get in again
        yield* Effect.promise(() => Promise.all(flood.map((f) => f.closed)))
        const again = yield* connect()
        expect((yield* again.exec("whoami")).code).toBe(0)
      })
    )
  })

  it("a malformed packet ends only the offending connection", async () => {
    await run(
      Effect.gen(function* () {
        const good = yield* connect()
        // a packet length no server accepts, straight after the identification line
        const raw = rawConnection(srv.port, Buffer.concat([Buffer.from("SSH-2.0-garbage\r\n"), Buffer.from([0xff, 0xff, 0xff, 0xf0, 1, 2, 3, 4])]))
        const { afterMs } = yield* Effect.promise(() => raw.closed)
        expect(afterMs).toBeLessThan(700)
        // an authenticated client sending a pty-req whose body is garbage
        const bad = yield* connect()
        const session = yield* bad.openSession
        const refused = yield* Effect.flip(session.request("pty-req", Uint8Array.of(0, 0, 0, 9, 1)))
        expect(refused.reason).toBe("connection-closed")
        yield* bad.closed.pipe(Effect.either)
        expect(text((yield* good.exec("upper", { stdin: "unharmed" })).stdout)).toBe("UNHARMED")
        // a well-formed pty-req on the good connection still works
        const ok = yield* good.openSession
        yield* ok.request("pty-req", encodePtyRequest({ term: "vt100", cols: 80, rows: 24, width: 0, height: 0, modes: {} }))
      })
    )
  })
})

describe("server transport options", () => {
  it("banner, greeting and ident reach the client; rekeys started by either side keep the data intact", async () => {
    const srv = await startServer({
      hostKeys: [hostKey],
      banner: "authorized use only\n",
      greeting: "a line before the version",
      ident: "TestServer_1.0",
      rekeyBytes: 256 * 1024,
      authenticate: passwordOrKeys(PASSWORD),
      onSession: scripted
    })
    const banners: string[] = []
    try {
      await run(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect({
            port: srv.port,
            username: "carol",
            auth: [SshAuth.password(Redacted.make(PASSWORD))],
            hostVerifier: SshClient.acceptAnyHostKey,
            onBanner: (m) => banners.push(m)
          })
          expect(ssh.serverIdentification).toBe("SSH-2.0-TestServer_1.0")
          // 4 MiB from the server crosses its 256 KiB rekey limit many times
          const big = yield* ssh.exec("big")
          expect(big.stdout.length).toBe(4 * 1024 * 1024)
          // key exchanges so far, as the client's transport counted them (a private field, read for the test)
          const kexCount = () => (ssh as unknown as { driver: { endpoint: { transport: { kexCount: number } } } }).driver.endpoint.transport.kexCount
          // the client's own limit is 1 GiB: every rekey after the first exchange was the server's
          expect(kexCount()).toBeGreaterThanOrEqual(2)
          const before = kexCount()
          yield* ssh.rekey
          const upper = yield* ssh.exec("upper", { stdin: "x".repeat(1024 * 1024) })
          expect(upper.stdout.length).toBe(1024 * 1024)
          expect(text(upper.stdout.subarray(0, 3))).toBe("XXX")
          expect(kexCount()).toBeGreaterThan(before)
        })
      )
    } finally {
      await srv.stop()
    }
    expect(banners).toEqual(["authorized use only\n"])
  })

  it("keepalives drop a client that stopped answering, and spare one that answers", async () => {
    const srv = await startServer({
      hostKeys: [hostKey],
      keepaliveInterval: "100 millis",
      keepaliveCountMax: 2,
      authenticate: passwordOrKeys(PASSWORD),
      onSession: scripted
    })
    try {
      await run(
        Effect.gen(function* () {
          const options = { port: srv.port, username: "dave", auth: [SshAuth.password(Redacted.make(PASSWORD))], hostVerifier: SshClient.acceptAnyHostKey }
          const alive = yield* SshClient.connect(options)
          const [ours, theirs] = duplexPair()
          yield* srv.server.handleConnection(ours)
          yield* SshClient.connect({ ...options, sock: theirs })
          expect((yield* srv.server.stats).authenticated).toBe(2)
          // the in-memory client stops reading: it can no longer answer
          theirs.pause()
          yield* Effect.sleep("700 millis")
          expect(yield* srv.server.stats).toEqual({ connections: 1, authenticated: 1 })
          expect((yield* alive.exec("whoami")).code).toBe(0)
        })
      )
    } finally {
      await srv.stop()
    }
  })
})
