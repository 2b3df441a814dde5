/**
 * Side-by-side server benchmark on loopback, in one run: effect-ssh's SshServer against the npm
 * `ssh2` Server (as it comes, and with TCP_NODELAY set on its sockets by hand), every row driven
 * by the same client against each server.
 *
 * Servers take turns (connection slices, transfer rounds) so the shared machine's changing load
 * hits each alike.
 *
 * 1. connections per second: connect + ed25519 publickey auth + exec of an in-process no-op +
 *    close, sequential and PARALLEL at once, BENCH_SECONDS each; clients OpenSSH `ssh`, the npm
 *    ssh2 client and effect-ssh's client. Also the server's CPU time per connection.
 * 2. memory per idle authenticated connection: BENCH_IDLE connections held open, server RSS and
 *    heapUsed growth after GC, divided by the count; twice on the same server, so the second
 *    ("steady") round leaves out the heap's one-time growth that the first ("cold") includes.
 * 3. exec throughput, both directions, BENCH_MIB MiB through an in-process source or sink on the
 *    server (64 KiB writes, as a file read stream makes them), aes128-gcm@openssh.com, best of
 *    BENCH_ROUNDS (and the median of the per-round ratios), timed from the exec request to the
 *    channel's close on a connection that has first moved BENCH_WARMUP_MIB untimed; the server's
 *    CPU time and GC pauses per MiB; and how busy client and server were, which shows which side
 *    set the rate.
 *
 * Each server runs in its own child process (this file with `--serve`, under --expose-gc), so its
 * RSS and CPU time are its own; the clients run in this process (OpenSSH's as child processes).
 * Every client is pinned to curve25519-sha256, ssh-ed25519 and aes128-gcm so both servers do
 * the same work (ssh2 has no post-quantum kex).
 *
 * Run: `node --import tsx bench/server.ts`. Knobs: BENCH_SECONDS (default 6), BENCH_PARALLEL (8),
 * BENCH_IDLE (200), BENCH_MIB (256), BENCH_ROUNDS (3), BENCH_WARMUP_MIB (512), BENCH_SERVERS /
 * BENCH_CLIENTS / BENCH_DIRECTIONS / BENCH_SECTIONS (comma lists; sections conn,mem,tput),
 * BENCH_PROFILE=DIR (CPU profile of our server process into DIR; summarize with
 * `node --import tsx bench/profile.ts --top FILE`), BENCH_TRACE_GC=DIR (V8's GC and incremental
 * marking trace of our server process into DIR), BENCH_PIN=1 (Linux: servers on CPU 1, clients
 * on CPU 0), BENCH_COUNT=1 (socket reads per MiB, and our reader's wake-ups).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { createWriteStream, readFileSync } from "node:fs"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import * as net from "node:net"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { constants, PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import ssh2 from "ssh2"
import type { Client as Ssh2Client, ServerChannel } from "ssh2"
import { parsePrivateKey } from "../src/protocol/keys/privateKey.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"
import * as SshServer from "../src/SshServer.js"
import type { ServerProcess } from "../src/SshServer.js"
import { generateKey, opensshArgs, requirePeer } from "./harness.js"

// ssh2 is CommonJS: its named exports are not visible to ESM
const { Client, Server: Ssh2Server, utils: ssh2Utils } = ssh2

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6)
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 8)
const IDLE = Number(process.env.BENCH_IDLE ?? 200)
const MIB = Number(process.env.BENCH_MIB ?? 256)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
// JIT compilation goes on for hundreds of MiB (V8 optimizes the per-pull and per-packet functions
// only once they are hot), so each connection first moves this much untimed: a steady state
const WARMUP_MIB = Number(process.env.BENCH_WARMUP_MIB ?? 512)
// Linux: servers on CPU 1 and this process (the clients) on CPU 0, so neither side takes the other's core
const PIN = process.env.BENCH_PIN === "1"
// how often each server reads its sockets, and how often our reader's pull found data (a fiber
// wake-up each): small reads cost our server more than ssh2's, whose reads run no fiber
const COUNT = process.env.BENCH_COUNT === "1"
const BYTES = MIB * 1024 * 1024
const KEX = "curve25519-sha256"
const CIPHER = "aes128-gcm@openssh.com"
const list = (name: string) => process.env[name]?.split(",")

type ServerName = "effect-ssh" | "ssh2" | "ssh2+nodelay"
const SERVERS = (["effect-ssh", "ssh2", "ssh2+nodelay"] as const).filter((s) => list("BENCH_SERVERS")?.includes(s) ?? true)
type ClientName = "openssh" | "ssh2" | "effect-ssh"
const SECTIONS = list("BENCH_SECTIONS") ?? ["conn", "mem", "tput"]

// ---------------------------------------------------------------------------------------------
// the server side: "true", "source N" (N bytes of zeros to stdout), "sink N" (reads stdin to EOF)

/** The same immutable 64 KiB for every write, so neither server pays for producing data. */
const CHUNK = new Uint8Array(64 * 1024)

interface ServeConfig {
  readonly hostKeyPath: string
  readonly clientPublicLine: string
}

function parseCommand(command: string): { readonly verb: string; readonly bytes: number } {
  const [verb = "", bytes = "0"] = command.split(" ")
  return { verb, bytes: Number(bytes) }
}

function ourCommand(p: ServerProcess, command: string): Effect.Effect<void, unknown> {
  const { verb, bytes } = parseCommand(command)
  switch (verb) {
    case "true":
      return p.exit(0)
    case "source":
      return Effect.gen(function* () {
        for (let left = bytes; left > 0; left -= CHUNK.length) {
          yield* p.write(left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left))
        }
        yield* p.exit(0)
      })
    case "sink":
      return Effect.flatMap(
        Stream.runFold(p.input, 0, (n, chunk) => n + chunk.length),
        (received) => p.exit(received === bytes ? 0 : 1)
      )
    default:
      return p.exit(127)
  }
}

/** Socket reads and, for our server, reader pulls that found data; counted under BENCH_COUNT=1. */
const counts = { reads: 0, pulls: 0 }

/** Wraps two internal methods of our server to count; only under BENCH_COUNT, as it costs a call each. */
async function countOurReads(): Promise<void> {
  const { Driver } = await import("../src/internal/driver.js")
  const { InboundBuffer } = await import("../src/internal/channelState.js")
  const driver = Driver.prototype as unknown as { receive: (...args: Array<unknown>) => void }
  const receive = driver.receive
  driver.receive = function (this: unknown, ...args: Array<unknown>) {
    counts.reads++
    receive.apply(this, args)
  }
  const take = InboundBuffer.prototype.take
  InboundBuffer.prototype.take = function (this: InstanceType<typeof InboundBuffer>) {
    const taken = take.call(this)
    if (Array.isArray(taken)) counts.pulls++
    return taken
  }
}

async function serveOurs(config: ServeConfig): Promise<number> {
  if (COUNT) await countOurReads()
  const allowed = Buffer.from(config.clientPublicLine.split(" ")[1]!, "base64")
  // a scope never closed: the server lives as long as this process
  const scope = Effect.runSync(Scope.make())
  const server = await Effect.runPromise(
    Scope.extend(
      SshServer.make({
        listen: { host: "127.0.0.1", port: 0 },
        hostKeys: [parsePrivateKey(readFileSync(config.hostKeyPath))],
        authMethods: ["publickey"],
        authenticate: (ctx) =>
          Effect.succeed(
            ctx.method === "publickey" && allowed.equals(ctx.key.blob) ? SshServer.AuthDecision.accept : SshServer.AuthDecision.reject()
          ),
        // forEachRequest, not Stream.runForEach over `requests`: the same loop without a Stream's ~0.3 ms
        onSession: (session) =>
          session.forEachRequest((request) =>
            request._tag === "Exec"
              ? Effect.flatMap(request.accept, (p) => Effect.forkScoped(Effect.ignore(ourCommand(p, request.command))))
              : request.reject
          ).pipe(Effect.ignore)
      }),
      scope
    )
  )
  return server.address!.port
}

function ssh2Command(stream: ServerChannel, command: string): void {
  const { verb, bytes } = parseCommand(command)
  const finish = (code: number) => {
    stream.exit(code)
    stream.end()
  }
  switch (verb) {
    case "true":
      return finish(0)
    case "source": {
      let left = bytes
      const pump = () => {
        while (left > 0) {
          const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left)
          left -= chunk.length
          if (!stream.write(chunk)) return void stream.once("drain", pump)
        }
        finish(0)
      }
      return pump()
    }
    case "sink": {
      let received = 0
      stream.on("data", (chunk: Buffer) => (received += chunk.length))
      stream.on("end", () => finish(received === bytes ? 0 : 1))
      return
    }
    default:
      return finish(127)
  }
}

async function serveSsh2(config: ServeConfig, noDelay: boolean): Promise<number> {
  const allowed = ssh2Utils.parseKey(config.clientPublicLine)
  if (allowed instanceof Error) throw allowed
  const allowedBlob = allowed.getPublicSSH()
  const server = new Ssh2Server({ hostKeys: [readFileSync(config.hostKeyPath)] }, (client) => {
    client.on("error", () => {})
    client.on("authentication", (ctx) => {
      if (
        ctx.method === "publickey" &&
        ctx.key.algo === allowed.type &&
        ctx.key.data.equals(allowedBlob) &&
        (ctx.signature === undefined || allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true)
      ) {
        return ctx.accept()
      }
      ctx.reject(["publickey"])
    })
    client.on("ready", () => {
      client.on("session", (accept) => {
        accept().on("exec", (accept, _reject, info) => ssh2Command(accept(), info.command))
      })
    })
  })
  // ssh2 has no option for TCP_NODELAY; its net.Server is private
  ;(server as unknown as { _srv: net.Server })._srv.on("connection", (socket: net.Socket) => {
    if (noDelay) socket.setNoDelay(true)
    if (COUNT) socket.on("data", () => counts.reads++)
  })
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)))
}

/** The server process: prints its port, then answers "usage" requests over IPC. */
async function serve(name: ServerName, config: ServeConfig): Promise<void> {
  const port = name === "effect-ssh" ? await serveOurs(config) : await serveSsh2(config, name === "ssh2+nodelay")
  const gc = (globalThis as { gc?: () => void }).gc
  // the collections this process ran, as V8 reports them: their pause time and the full ones
  let gcMs = 0
  let fullGcs = 0
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMs += entry.duration
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) fullGcs++
    }
  }).observe({ entryTypes: ["gc"] })
  process.on("message", (message: { readonly id: number; readonly op: "usage" | "exit"; readonly collect?: boolean }) => {
    if (message.op === "exit") process.exit(0)
    // several passes: the first ones only promote what the second can free. Only for memory:
    // forced collections would otherwise count as CPU of the transfer just measured.
    if (message.collect) for (let i = 0; i < 4; i++) gc?.()
    const memory = process.memoryUsage()
    const cpu = process.cpuUsage()
    process.send!({ id: message.id, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external, cpuMs: (cpu.user + cpu.system) / 1000, gcMs, fullGcs, ...counts })
  })
  process.on("disconnect", () => process.exit(0))
  process.stdout.write(`${JSON.stringify({ port })}\n`)
}

// ---------------------------------------------------------------------------------------------
// the orchestrator: server processes

interface Usage {
  readonly rss: number
  readonly heapUsed: number
  readonly external: number
  readonly cpuMs: number
  readonly gcMs: number
  readonly fullGcs: number
  readonly reads: number
  readonly pulls: number
}

interface ServerProcessHandle {
  readonly name: ServerName
  readonly port: number
  /** CPU and memory so far; `collect` runs full collections first (for the memory figures). */
  readonly usage: (collect?: boolean) => Promise<Usage>
  readonly stop: () => Promise<void>
}

const thisFile = fileURLToPath(import.meta.url)

function startServer(name: ServerName, config: ServeConfig): Promise<ServerProcessHandle> {
  const ours = name === "effect-ssh"
  const profile = process.env.BENCH_PROFILE
  const traceGc = process.env.BENCH_TRACE_GC
  const nodeArgs = [
    "--expose-gc",
    ...(profile !== undefined && ours ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []),
    ...(traceGc !== undefined && ours ? ["--trace-gc", "--trace-incremental-marking"] : [])
  ]
  const args = [...nodeArgs, "--import", "tsx", thisFile, "--serve", name, JSON.stringify(config)]
  const [command, commandArgs] = PIN ? ["taskset", ["-c", "1", process.execPath, ...args]] : [process.execPath, args]
  const child: ChildProcess = spawn(command, commandArgs, { stdio: ["ignore", "pipe", "inherit", "ipc"] })
  let nextId = 0
  const pending = new Map<number, (usage: Usage) => void>()
  child.on("message", (message: Usage & { readonly id: number }) => {
    pending.get(message.id)?.(message)
    pending.delete(message.id)
  })
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  return new Promise((resolve, reject) => {
    let out = ""
    child.once("exit", (code) => reject(new Error(`server ${name} exited with ${code}: ${out}`)))
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const line = out.split("\n").find((l) => l.startsWith("{"))
      if (line === undefined) return
      child.stdout!.removeAllListeners("data")
      // V8's GC trace goes to stdout, after the port line
      if (traceGc !== undefined && ours) child.stdout!.pipe(createWriteStream(join(traceGc, `server-${child.pid}.log`)))
      else child.stdout!.resume()
      resolve({
        name,
        port: (JSON.parse(line) as { port: number }).port,
        usage: (collect = false) =>
          new Promise((resolveUsage) => {
            const id = nextId++
            pending.set(id, resolveUsage)
            child.send({ id, op: "usage", collect })
          }),
        stop: async () => {
          child.send({ id: -1, op: "exit" })
          await exited
        }
      })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// the clients: "one connection running one command", and "one connection held open"

interface Target {
  readonly port: number
  readonly keyPath: string
  readonly key: Buffer
  readonly user: string
}

function sshArgs(target: Target, command: string): Array<string> {
  return opensshArgs(target, command, { KexAlgorithms: KEX, HostKeyAlgorithms: "ssh-ed25519", Ciphers: CIPHER })
}

function opensshOnce(target: Target): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(requirePeer("ssh"), sshArgs(target, "true"), { stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`ssh exited with ${code}: ${stderr}`))))
  })
}

/** An authenticated ssh2 client over a socket with Nagle off, as the client benchmark found necessary. */
function ssh2Connect(target: Target): Promise<Ssh2Client> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port: target.port, noDelay: true })
    sock.once("error", reject)
    sock.once("connect", () => {
      const client = new Client()
      client.once("error", reject)
      client.once("ready", () => resolve(client))
      client.connect({
        sock,
        username: target.user,
        privateKey: target.key,
        algorithms: { kex: [KEX], serverHostKey: ["ssh-ed25519"], cipher: [CIPHER] }
      })
    })
  })
}

function ssh2Close(client: Ssh2Client): Promise<void> {
  return new Promise((resolve) => {
    client.once("close", () => resolve())
    client.end()
  })
}

/** Runs one command over an ssh2 client: sends `upload` bytes (then EOF), counts what comes back. */
function ssh2Exec(client: Ssh2Client, command: string, upload = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error, stream) => {
      if (error) return reject(error)
      let received = 0
      let code: number | undefined
      stream.on("data", (chunk: Buffer) => (received += chunk.length))
      stream.stderr.resume()
      stream.on("exit", (exitCode: number) => (code = exitCode))
      stream.on("close", () => (code === 0 ? resolve(received) : reject(new Error(`${command} exited with ${code}`))))
      let left = upload
      const pump = () => {
        while (left > 0) {
          const chunk = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left)
          left -= chunk.length
          if (!stream.write(chunk)) return void stream.once("drain", pump)
        }
        stream.end()
      }
      pump()
    })
  })
}

function effectConnect(target: Target) {
  return SshClient.connect({
    host: "127.0.0.1",
    port: target.port,
    username: target.user,
    auth: [SshAuth.privateKey(parsePrivateKey(target.key))],
    hostVerifier: () => true,
    algorithms: { kex: [KEX], hostKey: ["ssh-ed25519"], cipher: [CIPHER] }
  })
}

function effectExec(ssh: SshClient.SshConnection, command: string, upload = 0) {
  return Effect.scoped(
    Effect.gen(function* () {
      const process = yield* ssh.spawn(command)
      const writer = Effect.gen(function* () {
        for (let left = upload; left > 0; left -= CHUNK.length) {
          yield* process.write(left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left))
        }
        yield* process.end
      })
      const [, received] = yield* Effect.all([writer, Stream.runFold(process.stdout, 0, (n, chunk) => n + chunk.length)], {
        concurrency: 2
      })
      const exit = yield* process.exit
      if (exit.code !== 0) return yield* Effect.die(new Error(`${command} exited with ${exit.code}`))
      return received
    })
  )
}

const connectOnce: Record<ClientName, (target: Target) => Promise<void>> = {
  openssh: opensshOnce,
  ssh2: async (target) => {
    const client = await ssh2Connect(target)
    await ssh2Exec(client, "true")
    await ssh2Close(client)
  },
  "effect-ssh": (target) =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const ssh = yield* effectConnect(target)
          yield* effectExec(ssh, "true")
        })
      )
    )
}

// ---------------------------------------------------------------------------------------------
// the workloads

interface Rate {
  readonly perSecond: number
  readonly serverCpuMsPerConnection: number
}

/**
 * The machine is shared and its load changes by the second: each server gets SLICES turns of
 * SECONDS / SLICES, interleaved, so a busy moment costs every server alike.
 */
const SLICES = 3

async function connectionsPerSecond(targets: ReadonlyArray<readonly [ServerProcessHandle, Target]>, client: ClientName, parallel: number): Promise<Array<Rate>> {
  const once = connectOnce[client]
  for (const [, target] of targets) for (let i = 0; i < parallel; i++) await once(target) // warm-up: JIT on both sides
  const totals = targets.map(() => ({ done: 0, seconds: 0, cpuMs: 0 }))
  for (let slice = 0; slice < SLICES; slice++) {
    for (const [i, [server, target]] of targets.entries()) {
      const cpuBefore = (await server.usage()).cpuMs
      const started = performance.now()
      const deadline = started + (SECONDS * 1000) / SLICES
      let done = 0
      await Promise.all(
        Array.from({ length: parallel }, async () => {
          while (performance.now() < deadline) {
            await once(target)
            done++
          }
        })
      )
      totals[i]!.seconds += (performance.now() - started) / 1000
      totals[i]!.cpuMs += (await server.usage()).cpuMs - cpuBefore
      totals[i]!.done += done
    }
  }
  return totals.map((t) => ({ perSecond: t.done / t.seconds, serverCpuMsPerConnection: t.cpuMs / t.done }))
}

interface IdleMemory {
  /** Growth per connection over a server that has already served IDLE connections once. */
  readonly steady: MemoryGrowth
  /** The same over a server that has served only a few: includes its heap's one-time growth. */
  readonly cold: MemoryGrowth
  readonly baseRssMiB: number
}

interface MemoryGrowth {
  readonly rssKiB: number
  readonly heapKiB: number
  readonly externalKiB: number
}

/** Opens IDLE authenticated connections and holds them: the server's growth per connection after GC. */
async function holdIdle(server: ServerProcessHandle, target: Target): Promise<{ readonly growth: MemoryGrowth; readonly before: Usage }> {
  const before = await server.usage(true)
  const clients: Array<Ssh2Client> = []
  // a few at a time: effect-ssh drops unauthenticated connections beyond maxStartups (10)
  for (let i = 0; i < IDLE; i += PARALLEL) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(PARALLEL, IDLE - i) }, () => ssh2Connect(target)))))
  }
  await new Promise((r) => setTimeout(r, 1000))
  const after = await server.usage(true)
  await Promise.all(clients.map(ssh2Close))
  // closed sockets linger up to a second on both servers before they are freed
  await new Promise((r) => setTimeout(r, 2000))
  return {
    before,
    growth: {
      rssKiB: (after.rss - before.rss) / 1024 / IDLE,
      heapKiB: (after.heapUsed - before.heapUsed) / 1024 / IDLE,
      externalKiB: (after.external - before.external) / 1024 / IDLE
    }
  }
}

async function idleMemory(server: ServerProcessHandle, target: Target): Promise<IdleMemory> {
  // warm-up: the code paths of a connection are loaded and compiled before the baseline
  for (let i = 0; i < 8; i++) await connectOnce.ssh2(target)
  // the first round also grows the server's young generation, a one-time cost of the process
  const cold = await holdIdle(server, target)
  const steady = await holdIdle(server, target)
  return { cold: cold.growth, steady: steady.growth, baseRssMiB: cold.before.rss / 2 ** 20 }
}

type Direction = "download" | "upload"

interface Throughput {
  readonly mbPerSecond: ReadonlyArray<number>
  readonly serverCpuMsPerMiB: number
  /** The server's GC pauses per MiB, and its full (mark-compact) collections in all rounds. */
  readonly serverGcMsPerMiB: number
  readonly serverFullGcs: number
  readonly readsPerMiB: number
  readonly pullsPerMiB: number
  /** CPU of this process, where the client runs, per MiB moved. */
  readonly clientCpuMsPerMiB: number
  /** Share of one core each side was busy during the transfers: 1 means it had no time to spare. */
  readonly serverBusy: number
  readonly clientBusy: number
}

/** One open connection of one client: runs a command, sending `upload` bytes, returns the bytes received. */
interface OpenConnection {
  readonly exec: (command: string, upload: number) => Promise<number>
  readonly close: () => Promise<void>
}

async function open(client: "ssh2" | "effect-ssh", target: Target): Promise<OpenConnection> {
  if (client === "ssh2") {
    const ssh = await ssh2Connect(target)
    return { exec: (command, upload) => ssh2Exec(ssh, command, upload), close: () => ssh2Close(ssh) }
  }
  const scope = Effect.runSync(Scope.make())
  const ssh = await Effect.runPromise(Scope.extend(effectConnect(target), scope))
  return { exec: (command, upload) => Effect.runPromise(effectExec(ssh, command, upload)), close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

/** Rounds interleaved across the servers, like the connection slices. */
async function throughput(
  targets: ReadonlyArray<readonly [ServerProcessHandle, Target]>,
  client: "ssh2" | "effect-ssh",
  direction: Direction
): Promise<Array<Throughput>> {
  const command = (bytes: number) => (direction === "download" ? `source ${bytes}` : `sink ${bytes}`)
  const upload = (bytes: number) => (direction === "upload" ? bytes : 0)
  const connections = await Promise.all(targets.map(([, target]) => open(client, target)))
  const results = targets.map(() => ({ mbPerSecond: [] as Array<number>, cpuMs: 0, gcMs: 0, fullGcs: 0, reads: 0, pulls: 0, clientCpuMs: 0, seconds: 0 }))
  try {
    for (const connection of connections) await connection.exec(command(WARMUP_MIB << 20), upload(WARMUP_MIB << 20)) // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, [server]] of targets.entries()) {
        const before = await server.usage()
        const clientBefore = process.cpuUsage()
        const started = performance.now()
        const received = await connections[i]!.exec(command(BYTES), upload(BYTES))
        const seconds = (performance.now() - started) / 1000
        const clientCpu = process.cpuUsage(clientBefore)
        results[i]!.clientCpuMs += (clientCpu.user + clientCpu.system) / 1000
        results[i]!.seconds += seconds
        const after = await server.usage()
        results[i]!.cpuMs += after.cpuMs - before.cpuMs
        results[i]!.gcMs += after.gcMs - before.gcMs
        results[i]!.fullGcs += after.fullGcs - before.fullGcs
        results[i]!.reads += after.reads - before.reads
        results[i]!.pulls += after.pulls - before.pulls
        if (direction === "download" && received !== BYTES) throw new Error(`${client} received ${received} of ${BYTES} bytes`)
        results[i]!.mbPerSecond.push(BYTES / 1e6 / seconds)
      }
    }
  } finally {
    await Promise.all(connections.map((c) => c.close()))
  }
  return results.map((r) => ({
    mbPerSecond: r.mbPerSecond,
    serverCpuMsPerMiB: r.cpuMs / (ROUNDS * MIB),
    serverGcMsPerMiB: r.gcMs / (ROUNDS * MIB),
    serverFullGcs: r.fullGcs,
    readsPerMiB: r.reads / (ROUNDS * MIB),
    pullsPerMiB: r.pulls / (ROUNDS * MIB),
    clientCpuMsPerMiB: r.clientCpuMs / (ROUNDS * MIB),
    serverBusy: r.cpuMs / 1000 / r.seconds,
    clientBusy: r.clientCpuMs / 1000 / r.seconds
  }))
}

/**
 * The median over rounds of ours/theirs within each round: the servers take turns, so a round's
 * pair met the same load, and the median is steadier than a ratio of bests on a shared machine.
 */
function pairedMedian(ours: ReadonlyArray<number>, theirs: ReadonlyArray<number>): number {
  const ratios = ours.map((o, i) => o / theirs[i]!).sort((a, b) => a - b)
  const mid = ratios.length >> 1
  return ratios.length % 2 === 1 ? ratios[mid]! : (ratios[mid - 1]! + ratios[mid]!) / 2
}

// ---------------------------------------------------------------------------------------------
// the report

const pad = (s: string, n: number) => s.padEnd(n)
const num = (x: number | undefined, digits = 1, width = 10) => (x === undefined ? "n/a" : x.toFixed(digits)).padStart(width)
const ratio = (ours: number | undefined, theirs: number | undefined) =>
  (ours === undefined || theirs === undefined ? "n/a" : `${(ours / theirs).toFixed(2)}x`).padStart(9)

/** CPU time the hypervisor gave to other guests (Linux /proc/stat), summed over all CPUs, in ms. */
function stolenMs(): number | undefined {
  try {
    const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/)
    return (Number(fields[8]) * 1000) / 100 // USER_HZ is 100 on Linux
  } catch {
    return undefined
  }
}

function header(columns: ReadonlyArray<string>, width: number): string {
  const others = SERVERS.filter((s) => s !== "effect-ssh")
  return `   ${columns.map((c) => pad(c, width)).join("")}${SERVERS.map((s) => s.padStart(14)).join("")}${others.map((s) => `ours/${s}`.padStart(20)).join("")}`
}

/** A row of preformatted cells, one per server, under the labels. */
function cells(labels: ReadonlyArray<string>, values: ReadonlyArray<string>, width: number): string {
  return `   ${labels.map((l) => pad(l, 12)).join("")}${values.map((v) => v.padStart(width)).join("")}`
}

function row(labels: ReadonlyArray<string>, width: number, values: Map<ServerName, number>, digits: number, extra = ""): string {
  const others = SERVERS.filter((s) => s !== "effect-ssh")
  return (
    `   ${labels.map((l) => pad(l, width)).join("")}${SERVERS.map((s) => num(values.get(s), digits, 14)).join("")}` +
    `${others.map((s) => ratio(values.get("effect-ssh"), values.get(s)).padStart(20)).join("")}${extra}`
  )
}

async function main(): Promise<void> {
  const started = new Date()
  if (PIN) execFileSync("taskset", ["-a", "-cp", "0", String(process.pid)], { stdio: "ignore" })
  console.log(`effect-ssh server benchmark — ${started.toISOString()}`)
  console.log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "?"}, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`)
  const stolenBefore = stolenMs()
  const dir = await mkdtemp(join(tmpdir(), "effect-ssh-server-bench-"))
  await chmod(dir, 0o700)
  const hostKey = await generateKey(join(dir, "host_ed25519"), "ed25519")
  const clientKey = await generateKey(join(dir, "id_ed25519"), "ed25519")
  const config: ServeConfig = { hostKeyPath: hostKey.privatePath, clientPublicLine: clientKey.publicLine }
  const servers = new Map<ServerName, ServerProcessHandle>()
  const targetOf = (s: ServerName): Target => ({
    port: servers.get(s)!.port,
    keyPath: clientKey.privatePath,
    key: readFileSync(clientKey.privatePath),
    user: "bench"
  })
  const targets = () => SERVERS.map((s) => [servers.get(s)!, targetOf(s)] as const)
  console.log(`servers: ${SERVERS.join(", ")}, each in its own process; kex ${KEX}, host key ssh-ed25519, cipher ${CIPHER}\n`)
  // the transfers get new server processes: the memory section's forced collections shrink the
  // young generation, and the next transfers would pay for that in scavenges
  const freshServers = async () => {
    for (const server of servers.values()) await server.stop()
    servers.clear()
    for (const s of SERVERS) servers.set(s, await startServer(s, config))
  }
  try {
    await freshServers()
    if (SECTIONS.includes("conn")) {
      console.log(`1. connections per second: connect + ed25519 auth + exec (in-process no-op) + close, ${SECONDS} s each`)
      console.log(header(["client", "at once"], 12))
      const clients = (["openssh", "ssh2", "effect-ssh"] as const).filter((c) => list("BENCH_CLIENTS")?.includes(c) ?? true)
      const cpuRows: Array<string> = []
      for (const client of clients) {
        for (const parallel of [1, PARALLEL]) {
          const measured = await connectionsPerSecond(targets(), client, parallel)
          const rates = new Map(SERVERS.map((s, i) => [s, measured[i]!.perSecond] as const))
          const cpu = new Map(SERVERS.map((s, i) => [s, measured[i]!.serverCpuMsPerConnection] as const))
          console.log(row([client, String(parallel)], 12, rates, 1))
          cpuRows.push(row([client, String(parallel)], 12, cpu, 2))
        }
      }
      console.log(`   server CPU ms per connection (user + system of the server process; < 1 is better for effect-ssh)`)
      for (const r of cpuRows) console.log(r)
      console.log()
    }

    if (SECTIONS.includes("mem")) {
      console.log(`2. memory per idle authenticated connection, ${IDLE} open (ssh2 client), growth after GC divided by ${IDLE}, KiB`)
      console.log(header(["measure"], 20))
      const results = new Map<ServerName, IdleMemory>()
      for (const s of SERVERS) results.set(s, await idleMemory(servers.get(s)!, targetOf(s)))
      const pick = (f: (m: IdleMemory) => number) => new Map([...results].map(([s, m]) => [s, f(m)] as const))
      for (const [phase, of] of [["steady", (m: IdleMemory) => m.steady], ["cold", (m: IdleMemory) => m.cold]] as const) {
        console.log(row([`${phase}: RSS`], 20, pick((m) => of(m).rssKiB), 1))
        console.log(row([`${phase}: JS heap used`], 20, pick((m) => of(m).heapKiB), 1))
        console.log(row([`${phase}: external`], 20, pick((m) => of(m).externalKiB), 1))
      }
      console.log(row(["(RSS before, MiB)"], 20, pick((m) => m.baseRssMiB), 1))
      console.log(`   steady: the second round of ${IDLE} on the same server; cold: the first, which also grows the server's heap once`)
      console.log()
    }

    if (SECTIONS.includes("tput")) {
      if (SECTIONS.includes("mem")) await freshServers()
      console.log(`3. exec throughput, ${MIB} MiB through an in-process source/sink, 64 KiB writes, best of ${ROUNDS}, MB/s (10^6 B/s)`)
      console.log(header(["client", "direction"], 12))
      const clients = (["ssh2", "effect-ssh"] as const).filter((c) => list("BENCH_CLIENTS")?.includes(c) ?? true)
      const cpuRows: Array<string> = []
      const busyRows: Array<string> = []
      const gcRows: Array<string> = []
      const countRows: Array<string> = []
      for (const client of clients) {
        for (const direction of (["download", "upload"] as const).filter((d) => list("BENCH_DIRECTIONS")?.includes(d) ?? true)) {
          const measured = await throughput(targets(), client, direction)
          const best = new Map(SERVERS.map((s, i) => [s, Math.max(...measured[i]!.mbPerSecond)] as const))
          const cpu = new Map(SERVERS.map((s, i) => [s, measured[i]!.serverCpuMsPerMiB] as const))
          const rounds = measured.map((m) => m.mbPerSecond.map((r) => r.toFixed(0)).join("/"))
          const ours = measured[SERVERS.indexOf("effect-ssh")]?.mbPerSecond
          const paired = SERVERS.flatMap((s, i) => (s === "effect-ssh" || !ours ? [] : [`${pairedMedian(ours, measured[i]!.mbPerSecond).toFixed(2)}x`]))
          console.log(row([client, direction], 12, best, 0, `   rounds ${rounds.join(" | ")}; median of paired rounds ${paired.join(", ")}`))
          cpuRows.push(row([client, direction], 12, cpu, 2))
          const busy = measured.map((m) => `${m.clientBusy.toFixed(2)} / ${m.serverBusy.toFixed(2)} (${m.clientCpuMsPerMiB.toFixed(2)})`)
          busyRows.push(cells([client, direction], busy, 24))
          const gcs = measured.map((m) => `${m.serverGcMsPerMiB.toFixed(2)} (${m.serverFullGcs})`)
          gcRows.push(cells([client, direction], gcs, 14))
          const reads = measured.map((m, i) => m.readsPerMiB.toFixed(1) + (SERVERS[i] === "effect-ssh" ? ` (${m.pullsPerMiB.toFixed(1)})` : ""))
          countRows.push(cells([client, direction], reads, 14))
        }
      }
      console.log(`   server CPU ms per MiB (< 1 is better for effect-ssh)`)
      for (const r of cpuRows) console.log(r)
      console.log(`   cores busy, client / server (client CPU ms per MiB): a side near 1.00 is what limits the rate`)
      for (const r of busyRows) console.log(r)
      console.log(`   server GC pauses ms per MiB (full collections in all rounds)`)
      for (const r of gcRows) console.log(r)
      if (COUNT) {
        console.log(`   server socket reads per MiB (effect-ssh: reader pulls that found data, a wake-up each)`)
        for (const r of countRows) console.log(r)
      }
      console.log()
    }

    console.log("targets (issue 3): connections/s ≥ 1.0x ssh2, memory per connection ≤ 1.0x ssh2, throughput ≥ 1.2x ssh2")
    console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")} (other processes on this machine add noise)`)
    const stolen = stolenMs()
    if (stolen !== undefined && stolenBefore !== undefined) {
      const share = (stolen - stolenBefore) / (cpus().length * (Date.now() - started.getTime()))
      console.log(`CPU time taken by the hypervisor for other guests during the run: ${(100 * share).toFixed(1)}% of both cores`)
    }
  } finally {
    for (const server of servers.values()) await server.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === "--serve") {
  await serve(process.argv[3] as ServerName, JSON.parse(process.argv[4]!) as ServeConfig)
} else {
  await main()
}
