/**
 * Side-by-side client benchmark on loopback, in one run against one private OpenSSH sshd:
 * effect-ssh's Effect client, the npm `ssh2` client (as it comes, and with TCP_NODELAY set by
 * hand) and OpenSSH's `ssh` binary.
 *
 * 1. connect + ed25519 publickey auth + exec `true` + close: median and p90 latency.
 * 2. exec download of BENCH_MIB MiB (`head -c N /dev/zero`) per cipher: MB/s, best of BENCH_ROUNDS,
 *    timed end to end (connect + auth + exec + transfer + close) for every client alike.
 * 3. CPU time and peak RSS of the client process during the downloads.
 *
 * Each client runs in its own child process (this file with `--worker`), so JIT state, heap and
 * peak RSS are its own. Run: `npm run bench`. Knobs: BENCH_RUNS (latency runs, default 30),
 * BENCH_MIB (default 256), BENCH_ROUNDS (default 3), BENCH_ONLY (comma list of client names).
 */
import { spawn } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { chmod, mkdtemp, rm } from "node:fs/promises"
import { createRequire } from "node:module"
import * as net from "node:net"
import { cpus, loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { Client } from "ssh2"
import { parsePrivateKey } from "../src/protocol/keys/privateKey.js"
import { fingerprint } from "../src/protocol/keys/publicKey.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"
import { generateKey, opensshArgs, requirePeer, startSshd } from "./harness.js"

const LATENCY_RUNS = Number(process.env.BENCH_RUNS ?? 30)
const DOWNLOAD_MIB = Number(process.env.BENCH_MIB ?? 256)
const DOWNLOAD_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const DOWNLOAD_BYTES = DOWNLOAD_MIB * 1024 * 1024
const DOWNLOAD_COMMAND = `head -c ${DOWNLOAD_BYTES} /dev/zero`
const CIPHERS = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"] as const

/**
 * "openssh" is pinned to curve25519-sha256, the kex the two Node clients end up with against this
 * sshd; "openssh-sntrup" keeps OpenSSH 9.x's default sntrup761x25519-sha512, which costs far more
 * CPU per handshake, so it is shown for latency only.
 */
type ClientName = "effect-ssh" | "ssh2" | "ssh2+nodelay" | "openssh" | "openssh-sntrup"
const CLIENTS: ReadonlyArray<ClientName> = ["effect-ssh", "ssh2", "ssh2+nodelay", "openssh", "openssh-sntrup"]
const LATENCY_ONLY: ReadonlyArray<ClientName> = ["openssh-sntrup"]

/** What a worker needs to reach the server. */
interface Target {
  readonly port: number
  readonly user: string
  readonly keyPath: string
  readonly hostKeyFingerprint: string
}

type Job =
  | { readonly kind: "latency"; readonly client: ClientName; readonly target: Target }
  | { readonly kind: "download"; readonly client: ClientName; readonly cipher: string; readonly target: Target }

interface LatencyResult {
  readonly samplesMs: ReadonlyArray<number>
  readonly note?: string
}

interface DownloadResult {
  readonly secondsPerRound: ReadonlyArray<number>
  /** Resident set before the first transfer and peak over the whole worker, in MiB. */
  readonly rssBeforeMiB: number
  readonly peakRssMiB: number | undefined
  /** CPU time (user + system) of the client process per MiB transferred. */
  readonly cpuMsPerMiB: number | undefined
  readonly note?: string
}

// ---------------------------------------------------------------------------------------------
// the clients, each as "one connection that runs one command and drains its stdout"

type OneShot = (target: Target, command: string, cipher: string | undefined) => Promise<number>

const effectOneShot: OneShot = (target, command, cipher) => {
  const key = parsePrivateKey(readFileSync(target.keyPath))
  return Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const ssh = yield* SshClient.connect({
          host: "127.0.0.1",
          port: target.port,
          username: target.user,
          auth: [SshAuth.privateKey(key)],
          hostVerifier: (info) => info.fingerprint === target.hostKeyFingerprint,
          ...(cipher !== undefined ? { algorithms: { cipher: [cipher] } } : {})
        })
        const process = yield* ssh.spawn(command)
        const received = yield* Stream.runFold(process.stdout, 0, (n, chunk) => n + chunk.length)
        const exit = yield* process.exit
        if (exit.code !== 0) return yield* Effect.die(new Error(`${command} exited with ${exit.code}`))
        return received
      })
    )
  )
}

const ssh2OneShot =
  (noDelay: boolean): OneShot =>
  (target, command, cipher) =>
    new Promise((resolve, reject) => {
      const start = (sock?: net.Socket) => {
        const client = new Client()
        let received = 0
        let code: number | undefined
        client.on("error", reject)
        client.on("ready", () => {
          client.exec(command, (error, stream) => {
            if (error) return reject(error)
            stream.on("data", (chunk: Buffer) => {
              received += chunk.length
            })
            stream.stderr.resume()
            stream.on("close", (exitCode: number) => {
              code = exitCode
              client.end()
            })
          })
        })
        client.on("close", () => {
          if (code === 0) resolve(received)
          else reject(new Error(`${command} exited with ${code}`))
        })
        client.connect({
          ...(sock !== undefined ? { sock } : { host: "127.0.0.1", port: target.port }),
          username: target.user,
          privateKey: readFileSync(target.keyPath),
          hostVerifier: (key: Buffer) => fingerprint(key) === target.hostKeyFingerprint,
          ...(cipher !== undefined ? { algorithms: { cipher: [cipher as never] } } : {})
        })
      }
      if (!noDelay) return start()
      // ssh2 has no option for it: hand it a socket that has Nagle's algorithm off
      const sock = net.connect({ host: "127.0.0.1", port: target.port, noDelay: true })
      sock.once("error", reject)
      sock.once("connect", () => start(sock))
    })

function sshArgs(target: Target, command: string, cipher: string | undefined, defaultKex = false): Array<string> {
  return opensshArgs(target, command, {
    ...(defaultKex ? {} : { KexAlgorithms: "curve25519-sha256" }),
    ...(cipher !== undefined ? { Ciphers: cipher } : {})
  })
}

const GNU_TIME = "/usr/bin/time"
const hasGnuTime = existsSync(GNU_TIME)

interface ProcessCost {
  readonly ms: number
  /** user + system CPU of the process, and its peak RSS; undefined without GNU time. */
  readonly cpuMs?: number
  readonly peakRssKiB?: number
}

/** Runs a process with stdout to /dev/null: wall time, and through GNU time its CPU and peak RSS. */
async function timeProcess(file: string, args: ReadonlyArray<string>): Promise<ProcessCost> {
  const report = join(tmpdir(), `effect-ssh-bench-time-${process.pid}`)
  const [command, commandArgs] = hasGnuTime ? [GNU_TIME, ["-f", "%U %S %M", "-o", report, file, ...args]] : [file, args]
  const ms = await new Promise<number>((resolve, reject) => {
    const started = performance.now()
    const child = spawn(command, commandArgs, { stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.on("error", reject)
    child.on("exit", (code) => {
      const ms = performance.now() - started
      if (code !== 0) reject(new Error(`${file} ${args.join(" ")} exited with ${code}: ${stderr}`))
      else resolve(ms)
    })
  })
  if (!hasGnuTime) return { ms }
  const [user, system, rss] = readFileSync(report, "utf8").trim().split("\n").at(-1)!.split(" ").map(Number)
  await rm(report, { force: true })
  return { ms, cpuMs: (user! + system!) * 1000, peakRssKiB: rss! }
}

// ---------------------------------------------------------------------------------------------
// worker side

async function runWorker(job: Job): Promise<LatencyResult | DownloadResult> {
  if (job.client === "openssh" || job.client === "openssh-sntrup") return runOpenssh(job)
  const oneShot = job.client === "effect-ssh" ? effectOneShot : ssh2OneShot(job.client === "ssh2+nodelay")
  if (job.kind === "latency") {
    await oneShot(job.target, "true", undefined) // warm-up: JIT, key parsing paths
    const samplesMs: Array<number> = []
    for (let i = 0; i < LATENCY_RUNS; i++) {
      const started = performance.now()
      await oneShot(job.target, "true", undefined)
      samplesMs.push(performance.now() - started)
    }
    return { samplesMs }
  }
  await oneShot(job.target, "head -c 1048576 /dev/zero", job.cipher) // warm-up
  const rssBeforeMiB = process.memoryUsage.rss() / 2 ** 20
  const secondsPerRound: Array<number> = []
  const cpuBefore = process.cpuUsage()
  for (let i = 0; i < DOWNLOAD_ROUNDS; i++) {
    const started = performance.now()
    const received = await oneShot(job.target, DOWNLOAD_COMMAND, job.cipher)
    secondsPerRound.push((performance.now() - started) / 1000)
    if (received !== DOWNLOAD_BYTES) throw new Error(`${job.client} received ${received} bytes, expected ${DOWNLOAD_BYTES}`)
  }
  // ru_maxrss is in KiB on Linux
  const cpu = process.cpuUsage(cpuBefore)
  return {
    secondsPerRound,
    rssBeforeMiB,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / (DOWNLOAD_ROUNDS * DOWNLOAD_MIB)
  }
}

async function runOpenssh(job: Job): Promise<LatencyResult | DownloadResult> {
  const ssh = requirePeer("ssh")
  if (job.kind === "latency") {
    const args = sshArgs(job.target, "true", undefined, job.client === "openssh-sntrup")
    await timeProcess(ssh, args)
    const samplesMs: Array<number> = []
    for (let i = 0; i < LATENCY_RUNS; i++) samplesMs.push((await timeProcess(ssh, args)).ms)
    const startup: Array<number> = []
    for (let i = 0; i < LATENCY_RUNS; i++) startup.push((await timeProcess(ssh, ["-V"])).ms)
    return { samplesMs, note: `ssh process start alone (ssh -V): median ${median(startup).toFixed(1)} ms, included above` }
  }
  await timeProcess(ssh, sshArgs(job.target, "head -c 1048576 /dev/zero", job.cipher))
  const rounds: Array<ProcessCost> = []
  for (let i = 0; i < DOWNLOAD_ROUNDS; i++) rounds.push(await timeProcess(ssh, sshArgs(job.target, DOWNLOAD_COMMAND, job.cipher)))
  return {
    secondsPerRound: rounds.map((r) => r.ms / 1000),
    rssBeforeMiB: 0,
    peakRssMiB: hasGnuTime ? Math.max(...rounds.map((r) => r.peakRssKiB!)) / 1024 : undefined,
    cpuMsPerMiB: hasGnuTime ? rounds.reduce((sum, r) => sum + r.cpuMs!, 0) / (DOWNLOAD_ROUNDS * DOWNLOAD_MIB) : undefined,
    note: "ssh process, stdout to /dev/null"
  }
}

// ---------------------------------------------------------------------------------------------
// orchestrator side

const thisFile = fileURLToPath(import.meta.url)

function inWorker<R>(job: Job): Promise<R> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", thisFile, "--worker", JSON.stringify(job)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()))
    child.on("error", reject)
    child.on("exit", (code) => {
      const line = out.trim().split("\n").at(-1) ?? ""
      if (code !== 0 || !line.startsWith("{")) reject(new Error(`worker ${job.client}/${job.kind} failed (exit ${code}): ${out}`))
      else resolve(JSON.parse(line) as R)
    })
  })
}

function median(xs: ReadonlyArray<number>): number {
  return quantile(xs, 0.5)
}

function quantile(xs: ReadonlyArray<number>, q: number): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const position = (sorted.length - 1) * q
  const low = Math.floor(position)
  const high = Math.ceil(position)
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (position - low)
}

const pad = (s: string, n: number) => s.padEnd(n)
const num = (x: number, digits = 1) => x.toFixed(digits).padStart(8)
const ratio = (ours: number | undefined, theirs: number | undefined) =>
  ours === undefined || theirs === undefined ? "     n/a" : `${(ours / theirs).toFixed(2)}x`.padStart(8)

async function main(): Promise<void> {
  const require = createRequire(import.meta.url)
  const ssh2Binding = require("ssh2/lib/protocol/crypto.js") as { bindingAvailable?: boolean }
  const ssh2Version = (require("ssh2/package.json") as { version: string }).version
  const only = process.env.BENCH_ONLY?.split(",")
  const clients = CLIENTS.filter((c) => only === undefined || only.includes(c))
  const started = new Date()
  console.log(`effect-ssh client benchmark — ${started.toISOString()}`)
  console.log(
    `node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "?"}, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`
  )
  console.log(
    `ssh2 ${ssh2Version} ${ssh2Binding.bindingAvailable ? "with its native crypto binding (sshcrypto.node)" : "(pure JS: native binding not built)"}; ` +
      `${(await sshVersion()).trim()}`
  )

  const dir = await mkdtemp(join(tmpdir(), "effect-ssh-bench-"))
  await chmod(dir, 0o755)
  const key = await generateKey(join(dir, "id_ed25519"), "ed25519")
  const sshd = await startSshd({ hostKeys: ["ed25519"], authorizedKeys: [key.publicLine] })
  const target: Target = { port: sshd.port, user: sshd.user, keyPath: key.privatePath, hostKeyFingerprint: sshd.hostKeys[0]!.fingerprint }
  console.log(`sshd on 127.0.0.1:${sshd.port}, login ${sshd.user}, host key ssh-ed25519; each client in its own process\n`)

  try {
    console.log(`1. connect + auth (ed25519) + exec true + close, ${LATENCY_RUNS} runs after one warm-up (ms)`)
    console.log(`   ${pad("client", 14)}   median      p90      min`)
    const latency = new Map<ClientName, number>()
    for (const client of clients) {
      const result = await inWorker<LatencyResult>({ kind: "latency", client, target })
      latency.set(client, median(result.samplesMs))
      console.log(
        `   ${pad(client, 14)} ${num(median(result.samplesMs))} ${num(quantile(result.samplesMs, 0.9))} ${num(Math.min(...result.samplesMs))}` +
          (result.note ? `   (${result.note})` : "")
      )
    }
    printRatios("latency (median; < 1 is better for effect-ssh)", latency, (ours, theirs) => ratio(ours, theirs))

    console.log(`\n2. exec download of ${DOWNLOAD_MIB} MiB (${DOWNLOAD_COMMAND}), best of ${DOWNLOAD_ROUNDS}, end to end, MB/s (10^6 B/s)`)
    console.log(`   ${pad("client", 14)} ${pad("cipher", 30)}     best   ${pad("rounds", 16)} CPU ms/MiB   peak RSS MiB (growth)`)
    const throughput = new Map<string, Map<ClientName, number>>()
    const cpu = new Map<string, Map<ClientName, number | undefined>>()
    for (const cipher of CIPHERS) {
      const row = new Map<ClientName, number>()
      throughput.set(cipher, row)
      cpu.set(cipher, new Map())
      for (const client of clients.filter((c) => !LATENCY_ONLY.includes(c))) {
        const result = await inWorker<DownloadResult>({ kind: "download", client, cipher, target })
        const rates = result.secondsPerRound.map((s) => DOWNLOAD_BYTES / 1e6 / s)
        row.set(client, Math.max(...rates))
        cpu.get(cipher)!.set(client, result.cpuMsPerMiB)
        const peak = result.peakRssMiB
        const memory =
          peak === undefined ? "n/a" : result.rssBeforeMiB > 0 ? `${peak.toFixed(0)} (+${(peak - result.rssBeforeMiB).toFixed(0)})` : peak.toFixed(0)
        console.log(
          `   ${pad(client, 14)} ${pad(cipher, 30)} ${num(Math.max(...rates), 0)}   ${pad(rates.map((r) => r.toFixed(0)).join(" / "), 16)} ` +
            `${(result.cpuMsPerMiB === undefined ? "n/a" : result.cpuMsPerMiB.toFixed(2)).padStart(10)}   ${memory}` +
            (result.note ? `   ${result.note}` : "")
        )
      }
    }
    for (const [cipher, row] of throughput) printRatios(`throughput ${cipher} (> 1 is better for effect-ssh)`, row, ratio)
    for (const [cipher, row] of cpu) printRatios(`client CPU per MiB ${cipher} (< 1 is better for effect-ssh)`, row, ratio)
    console.log(
      "   (RSS growth: peak over the resident set just before the transfers; the Node workers start at ~150 MiB because each loads tsx,\n" +
        "    effect and ssh2. CPU ms/MiB is the client process alone, less sensitive to the machine's load than MB/s.)"
    )

    console.log("\ntargets (issue 2): throughput ≥ 1.2x ssh2 and ≥ 1.0x OpenSSH on aes128-gcm; latency ≤ 1.0x ssh2")
    console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(" ")} (other processes on this machine add noise)`)
  } finally {
    await sshd.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

function printRatios(title: string, values: Map<ClientName, number | undefined>, format: (a: number | undefined, b: number | undefined) => string): void {
  const ours = values.get("effect-ssh")
  const parts = (["ssh2", "ssh2+nodelay", "openssh", "openssh-sntrup"] as const)
    .filter((c) => values.has(c))
    .map((c) => `effect-ssh/${c} ${format(ours, values.get(c)).trim()}`)
  if (parts.length > 0) console.log(`   ratios, ${title}: ${parts.join(", ")}`)
}

async function sshVersion(): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(requirePeer("ssh"), ["-V"], { stdio: ["ignore", "ignore", "pipe"] })
    let text = ""
    child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString()))
    child.on("exit", () => resolve(text))
  })
}

if (process.argv[2] === "--worker") {
  const job = JSON.parse(process.argv[3]!) as Job
  runWorker(job).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`)
      process.exit(0)
    },
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
} else {
  await main()
}
