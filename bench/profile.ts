/**
 * CPU profile of effect-ssh's client on the download workload: one connection, one exec of
 * `head -c N /dev/zero`, drained through `stdout`, against a private sshd.
 *
 * Only the transfer is profiled (connect to close, through node:inspector), not module loading
 * or the sshd set-up. The profile is written next to the summary for Chrome DevTools.
 *
 * Run:       node --import tsx bench/profile.ts [cipher] [MiB]
 * Summarize: node --import tsx bench/profile.ts --top <file>.cpuprofile [rows]
 */
import { readFileSync } from "node:fs"
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import { Session } from "node:inspector/promises"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { parsePrivateKey } from "../src/protocol/keys/privateKey.js"
import * as SshAuth from "../src/SshAuth.js"
import * as SshClient from "../src/SshClient.js"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** Prints self time per function and per file, the two views that point at a fix. */
function summarize(path: string, rows: number): void {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfUs = new Map<number, number>()
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0)
  const where = (url: string) => (url.startsWith("file://") ? relative(process.cwd(), new URL(url).pathname) : url || "(native)")
  const byFunction = new Map<string, number>()
  const byFile = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame
    const fn = `${frame.functionName || "(anonymous)"}  ${where(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ""}`
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us)
    const file = where(frame.url).replace(/^node_modules\/([^/]+\/[^/]+|[^/]+).*/, "node_modules/$1")
    byFile.set(file, (byFile.get(file) ?? 0) + us)
  }
  const print = (title: string, map: Map<string, number>) => {
    console.log(`\n${title} (self time, ${(total / 1e6).toFixed(2)} s sampled)`)
    for (const [name, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
      console.log(`${((100 * us) / total).toFixed(1).padStart(6)}%  ${name}`)
    }
  }
  print("by function", byFunction)
  print("by file", byFile)
}

async function download(cipher: string, mib: number): Promise<void> {
  const { generateKey, startSshd } = await import("./harness.js")
  const dir = await mkdtemp(join(tmpdir(), "effect-ssh-profile-"))
  await chmod(dir, 0o755)
  const key = await generateKey(join(dir, "id_ed25519"), "ed25519")
  const sshd = await startSshd({ hostKeys: ["ed25519"], authorizedKeys: [key.publicLine] })
  try {
    const bytes = mib * 1024 * 1024
    const session = new Session()
    session.connect()
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 200 })
    await session.post("Profiler.start")
    const started = performance.now()
    const received = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect({
            host: sshd.host,
            port: sshd.port,
            username: sshd.user,
            auth: [SshAuth.privateKey(parsePrivateKey(readFileSync(key.privatePath)))],
            hostVerifier: (info) => info.fingerprint === sshd.hostKeys[0]!.fingerprint,
            algorithms: { cipher: [cipher] }
          })
          const process = yield* ssh.spawn(`head -c ${bytes} /dev/zero`)
          return yield* Stream.runFold(process.stdout, 0, (n, chunk) => n + chunk.length)
        })
      )
    )
    const seconds = (performance.now() - started) / 1000
    const { profile } = await session.post("Profiler.stop")
    session.disconnect()
    const cpu = process.cpuUsage()
    console.log(`${cipher}: ${received} bytes in ${seconds.toFixed(2)} s, ${(received / 1e6 / seconds).toFixed(0)} MB/s`)
    console.log(`process CPU since start: user ${(cpu.user / 1e6).toFixed(2)} s, system ${(cpu.system / 1e6).toFixed(2)} s`)
    const path = join(tmpdir(), `effect-ssh-download-${cipher.replace(/@.*/, "")}-${Date.now()}.cpuprofile`)
    await writeFile(path, JSON.stringify(profile))
    console.log(`profile: ${path}`)
    summarize(path, 25)
  } finally {
    await sshd.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv[2] === "--top") summarize(process.argv[3]!, Number(process.argv[4] ?? 25))
else await download(process.argv[2] ?? "aes128-gcm@openssh.com", Number(process.argv[3] ?? 256))
