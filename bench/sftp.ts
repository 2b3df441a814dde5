/**
 * SFTP throughput, side by side in one run against one private sshd (internal-sftp):
 * our fastGet/fastPut and readStream/writeSink, npm ssh2's fastGet/fastPut and
 * createReadStream/createWriteStream, and OpenSSH's `sftp -b`. aes128-gcm for everyone.
 *
 *   node --import tsx bench/sftp.ts              # 256 MiB, best of 3
 *   BENCH_MIB=64 BENCH_ROUNDS=1 BENCH_ONLY=effect node --import tsx bench/sftp.ts
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createReadStream } from "node:fs"
import { chmod, chown, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pipeline } from "node:stream/promises"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { Client as Ssh2Client } from "ssh2"
import type { SFTPWrapper } from "ssh2"
import { parsePrivateKey } from "../src/protocol/keys/privateKey.js"
import * as Sftp from "../src/Sftp.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"
import { generateKey, requirePeer, startSshd } from "./harness.js"

const MIB = Number(process.env.BENCH_MIB ?? 256)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const ONLY = process.env.BENCH_ONLY?.split(",")
const CIPHER = "aes128-gcm@openssh.com"
const SIZE = MIB * 1024 * 1024

type Direction = "download" | "upload"
interface Row {
  readonly name: string
  readonly client: "effect-ssh" | "ssh2" | "openssh"
  readonly direction: Direction
  readonly run: () => Promise<void>
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "effect-ssh-bench-sftp-"))
  await chmod(work, 0o755)
  const key = await generateKey(join(work, "id_ed25519"), "ed25519")
  const sshd = await startSshd({ authorizedKeys: [key.publicLine], hostKeys: ["ed25519"], config: { Ciphers: CIPHER } })
  const { execFileSync } = await import("node:child_process")
  const uid = Number(execFileSync("id", ["-u", sshd.user]).toString())
  const gid = Number(execFileSync("id", ["-g", sshd.user]).toString())
  const files = join(work, "files")
  await (await import("node:fs/promises")).mkdir(files, { mode: 0o755 })
  await chown(files, uid, gid)
  const source = join(files, "source")
  await writeFile(source, randomBytes(SIZE))
  await chown(source, uid, gid)
  const local = join(work, "local")
  await writeFile(local, randomBytes(SIZE))
  const privateKey = await readFile(key.privatePath)

  const connectOptions: SshClient.ConnectOptions = {
    host: sshd.host,
    port: sshd.port,
    username: sshd.user,
    auth: [SshAuth.privateKey(parsePrivateKey(privateKey))],
    hostVerifier: SshClient.acceptAnyHostKey,
    algorithms: { cipher: [CIPHER] }
  }
  const ours = <A>(use: (sftp: Sftp.Sftp) => Effect.Effect<A, unknown>) =>
    Effect.runPromise(Effect.scoped(Effect.flatMap(Effect.flatMap(SshClient.connect(connectOptions), Sftp.make), use))).then(() => undefined)

  const ssh2 = (use: (sftp: SFTPWrapper) => Promise<void>) =>
    new Promise<void>((resolve, reject) => {
      const c = new Ssh2Client()
      c.on("ready", () =>
        c.sftp((err, sftp) => {
          if (err) return reject(err)
          use(sftp).then(
            () => {
              c.end()
              resolve()
            },
            (e: unknown) => {
              c.end()
              reject(e)
            }
          )
        })
      )
      c.on("error", reject)
      c.connect({ host: sshd.host, port: sshd.port, username: sshd.user, privateKey, algorithms: { cipher: [CIPHER] } })
    })
  const cb = (f: (done: (err?: Error | null) => void) => void) => new Promise<void>((resolve, reject) => f((e) => (e ? reject(e) : resolve())))

  const sftpBinary = requirePeer("sftp")
  const cpuFile = join(work, "cpu")
  /** CPU of the last OpenSSH transfer (ms, user and system), set by `openssh`. */
  let childCpu = { user: 0, system: 0 }
  const openssh = (command: string) =>
    new Promise<void>((resolve, reject) => {
      const batch = join(work, "batch")
      void writeFile(batch, `${command}\n`).then(() => {
        // /usr/bin/time reports the CPU of sftp and of the ssh it waits for, the client side as a whole
        const p = spawn(
          "/usr/bin/time",
          ["-f", "%U %S", "-o", cpuFile, sftpBinary, "-q", "-b", batch, "-i", key.privatePath, "-P", String(sshd.port), "-c", CIPHER, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", `${sshd.user}@${sshd.host}`],
          { stdio: ["ignore", "ignore", "pipe"] }
        )
        let err = ""
        p.stderr.on("data", (d) => (err += d))
        p.on("exit", (code) =>
          code === 0
            ? void readFile(cpuFile, "utf8").then((t) => {
                const [user, system] = t.trim().split(/\s+/).slice(-2).map(Number)
                childCpu = { user: (user ?? 0) * 1000, system: (system ?? 0) * 1000 }
                resolve()
              }, reject)
            : reject(new Error(`sftp exited ${code}: ${err}`))
        )
      })
    })

  const down = join(work, "down")
  const up = join(files, "up")
  const countStream = (s: NodeJS.ReadableStream) =>
    new Promise<void>((resolve, reject) => {
      let n = 0
      s.on("data", (d: Buffer) => (n += d.length))
      s.on("end", () => (n === SIZE ? resolve() : reject(new Error(`got ${n} bytes`))))
      s.on("error", reject)
    })

  const rows: Array<Row> = [
    { name: "fastGet", client: "effect-ssh", direction: "download", run: () => ours((s) => s.fastGet(source, down)) },
    {
      name: "readStream",
      client: "effect-ssh",
      direction: "download",
      run: () => ours((s) => Effect.flatMap(Stream.runFold(s.readStream(source), 0, (n, c) => n + c.length), (n) => (n === SIZE ? Effect.void : Effect.die(`got ${n}`))))
    },
    { name: "fastGet", client: "ssh2", direction: "download", run: () => ssh2((s) => cb((done) => s.fastGet(source, down, done))) },
    { name: "createReadStream", client: "ssh2", direction: "download", run: () => ssh2((s) => countStream(s.createReadStream(source))) },
    { name: "sftp -b get", client: "openssh", direction: "download", run: () => openssh(`get ${source} ${down}`) },
    { name: "fastPut", client: "effect-ssh", direction: "upload", run: () => ours((s) => s.fastPut(local, up)) },
    {
      name: "writeSink",
      client: "effect-ssh",
      direction: "upload",
      run: () =>
        ours((s) =>
          Stream.run(
            Stream.fromAsyncIterable(createReadStream(local, { highWaterMark: 256 * 1024 }) as AsyncIterable<Uint8Array>, (e) => e),
            s.writeSink(up)
          )
        )
    },
    { name: "fastPut", client: "ssh2", direction: "upload", run: () => ssh2((s) => cb((done) => s.fastPut(local, up, done))) },
    { name: "createWriteStream", client: "ssh2", direction: "upload", run: () => ssh2((s) => pipeline(createReadStream(local), s.createWriteStream(up))) },
    { name: "sftp -b put", client: "openssh", direction: "upload", run: () => openssh(`put ${local} ${up}`) }
  ].filter((r) => !ONLY || ONLY.includes(r.client)) as Array<Row>

  const results = new Map<Row, Array<number>>()
  /** Client CPU per MiB (ms) of each round: this process for ours and ssh2's, the sftp/ssh children for OpenSSH's. */
  const cpu = new Map<Row, Array<number>>()
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const row of rows) {
        // every row writes a new file: truncating the previous row's file would first wait for
        // the writeback of its dirty pages, a cost that depends on which row ran before
        await rm(down, { force: true })
        await rm(up, { force: true })
        const t0 = performance.now()
        const c0 = process.cpuUsage()
        await row.run()
        const seconds = (performance.now() - t0) / 1000
        const c = process.cpuUsage(c0)
        const { user, system } = row.client === "openssh" ? childCpu : { user: c.user / 1000, system: c.system / 1000 }
        const cpuMs = user + system
        cpu.set(row, [...(cpu.get(row) ?? []), cpuMs / MIB])
        if (row.direction === "upload" && (await stat(up)).size !== SIZE) throw new Error(`${row.client} ${row.name}: upload incomplete`)
        if (row.direction === "download" && row.name !== "readStream" && row.name !== "createReadStream" && (await stat(down)).size !== SIZE) {
          throw new Error(`${row.client} ${row.name}: download incomplete`)
        }
        const mbs = SIZE / 1e6 / seconds
        results.set(row, [...(results.get(row) ?? []), mbs])
        process.stderr.write(`${row.client} ${row.name}: ${mbs.toFixed(0)} MB/s, client CPU ${(cpuMs / MIB).toFixed(2)} ms/MiB (user ${(user / MIB).toFixed(2)}, system ${(system / MIB).toFixed(2)})\n`)
      }
    }
  } finally {
    await sshd.stop()
    await rm(work, { recursive: true, force: true })
  }

  const best = (row: Row) => Math.max(...results.get(row)!)
  console.log(`\n${MIB} MiB, ${CIPHER}, best of ${ROUNDS}; node ${process.version}\n`)
  const leastCpu = (row: Row) => Math.min(...cpu.get(row)!)
  console.log("| direction | client | method | MB/s best | rounds | client CPU ms/MiB (least) | rounds |")
  console.log("| --- | --- | --- | ---: | --- | ---: | --- |")
  for (const row of rows) {
    console.log(
      `| ${row.direction} | ${row.client} | ${row.name} | ${best(row).toFixed(0)} | ${results.get(row)!.map((x) => x.toFixed(0)).join(" / ")} | ${leastCpu(row).toFixed(2)} | ${cpu.get(row)!.map((x) => x.toFixed(2)).join(" / ")} |`
    )
  }
  const find = (client: Row["client"], name: string) => rows.find((r) => r.client === client && r.name === name)
  const ratio = (a: Row | undefined, b: Row | undefined) =>
    a && b ? `${(best(a) / best(b)).toFixed(2)}x (CPU/MiB ${(leastCpu(a) / leastCpu(b)).toFixed(2)}x)` : "n/a"
  console.log("\n| ratio | value |\n| --- | ---: |")
  console.log(`| our fastGet / openssh get | ${ratio(find("effect-ssh", "fastGet"), find("openssh", "sftp -b get"))} |`)
  console.log(`| our fastPut / openssh put | ${ratio(find("effect-ssh", "fastPut"), find("openssh", "sftp -b put"))} |`)
  console.log(`| our fastGet / ssh2 fastGet | ${ratio(find("effect-ssh", "fastGet"), find("ssh2", "fastGet"))} |`)
  console.log(`| our fastPut / ssh2 fastPut | ${ratio(find("effect-ssh", "fastPut"), find("ssh2", "fastPut"))} |`)
  console.log(`| our readStream / ssh2 createReadStream | ${ratio(find("effect-ssh", "readStream"), find("ssh2", "createReadStream"))} |`)
  console.log(`| our writeSink / ssh2 createWriteStream | ${ratio(find("effect-ssh", "writeSink"), find("ssh2", "createWriteStream"))} |`)
  console.log(`| our readStream / our fastGet | ${ratio(find("effect-ssh", "readStream"), find("effect-ssh", "fastGet"))} |`)
}

await main()
