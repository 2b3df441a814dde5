/**
 * Our SFTP server against sshd's, both serving OpenSSH's `sftp -b` client: a 256 MiB get and
 * put through each, aes128-gcm, one fresh `sftp` process per transfer. sshd serves with
 * `internal-sftp` (the sftp-server code, in sshd's process); ours is SftpServer over
 * `nodeFileSystem`, in this node process.
 *
 *   node --import tsx bench/sftp-server.ts              # 256 MiB, best of 3
 *   BENCH_MIB=64 BENCH_ROUNDS=1 node --import tsx bench/sftp-server.ts
 */
import { execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { generatePrivateKey } from "../src/protocol/keys/privateKey.js"
import { parsePublicKeyLine } from "../src/protocol/keys/publicKey.js"
import * as SftpServer from "../src/SftpServer.js"
import { passwordOrKeys, startServer } from "../test/support/ourServer.js"
import { generateKey, requirePeer, startSshd } from "./harness.js"

const MIB = Number(process.env.BENCH_MIB ?? 256)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const CIPHER = "aes128-gcm@openssh.com"
const SIZE = MIB * 1024 * 1024

interface Target {
  readonly name: "sshd internal-sftp" | "effect-ssh SftpServer"
  readonly port: number
  readonly user: string
  /** Where the served files are on disk, and how the client names that folder. */
  readonly dir: string
  readonly remoteDir: string
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "effect-ssh-bench-sftp-server-"))
  await chmod(work, 0o755)
  const key = await generateKey(join(work, "id_ed25519"), "ed25519")
  const sshd = await startSshd({ authorizedKeys: [key.publicLine], hostKeys: ["ed25519"], config: { Ciphers: CIPHER } })
  const ours = await startServer({
    hostKeys: [generatePrivateKey("ed25519")],
    algorithms: { cipher: [CIPHER] },
    authenticate: passwordOrKeys("unused", [parsePublicKeyLine(key.publicLine)]),
    onSession: SftpServer.sessionHandler(SftpServer.nodeFileSystem(await servedDir(join(work, "ours"))))
  })
  const sshdDir = await servedDir(join(work, "sshd"))
  const uid = Number(execFileSync("id", ["-u", sshd.user]).toString())
  const gid = Number(execFileSync("id", ["-g", sshd.user]).toString())
  await chown(sshdDir, uid, gid)
  await chown(join(sshdDir, "source"), uid, gid)
  const local = join(work, "local")
  await writeFile(local, randomBytes(SIZE))
  const down = join(work, "down")

  const targets: ReadonlyArray<Target> = [
    { name: "sshd internal-sftp", port: sshd.port, user: sshd.user, dir: sshdDir, remoteDir: sshdDir },
    { name: "effect-ssh SftpServer", port: ours.port, user: "bench", dir: join(work, "ours"), remoteDir: "" }
  ]
  const sftpBinary = requirePeer("sftp")
  const batch = join(work, "batch")
  const sftp = async (target: Target, command: string) => {
    await writeFile(batch, `${command}\n`)
    await new Promise<void>((resolve, reject) => {
      const args = ["-q", "-F", "/dev/null", "-b", batch, "-i", key.privatePath, "-P", String(target.port), "-c", CIPHER]
      const options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "LogLevel=ERROR"]
      const p = spawn(sftpBinary, [...args, ...options.flatMap((o) => ["-o", o]), `${target.user}@127.0.0.1`], { stdio: ["ignore", "ignore", "pipe"] })
      let err = ""
      p.stderr.on("data", (d) => (err += d))
      p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`sftp exited ${code}: ${err}`))))
    })
  }

  type Direction = "get" | "put"
  const results = new Map<string, Array<number>>()
  const measure = async (target: Target, direction: Direction) => {
    const t0 = performance.now()
    if (direction === "get") await sftp(target, `get ${target.remoteDir}/source ${down}`)
    else await sftp(target, `put ${local} ${target.remoteDir}/up`)
    const seconds = (performance.now() - t0) / 1000
    const landed = direction === "get" ? down : join(target.dir, "up")
    if ((await stat(landed)).size !== SIZE) throw new Error(`${target.name} ${direction}: incomplete`)
    const mbs = SIZE / 1e6 / seconds
    const label = `${direction}|${target.name}`
    results.set(label, [...(results.get(label) ?? []), mbs])
    process.stderr.write(`${target.name} ${direction}: ${mbs.toFixed(0)} MB/s\n`)
  }
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const direction of ["get", "put"] as const) for (const target of targets) await measure(target, direction)
    }
  } finally {
    await ours.stop()
    await sshd.stop()
    await rm(work, { recursive: true, force: true })
  }

  const best = (label: string) => Math.max(...results.get(label)!)
  console.log(`\n${MIB} MiB, OpenSSH sftp -b as the client, ${CIPHER}, best of ${ROUNDS}; node ${process.version}\n`)
  console.log("| direction | server | MB/s best | rounds |")
  console.log("| --- | --- | ---: | --- |")
  for (const [label, runs] of results) {
    const [direction, server] = label.split("|")
    console.log(`| ${direction} | ${server} | ${best(label).toFixed(0)} | ${runs.map((x) => x.toFixed(0)).join(" / ")} |`)
  }
  console.log("\n| ratio (best MB/s) | value |\n| --- | ---: |")
  for (const direction of ["get", "put"]) {
    console.log(`| our server / sshd, ${direction} | ${(best(`${direction}|effect-ssh SftpServer`) / best(`${direction}|sshd internal-sftp`)).toFixed(2)}x |`)
  }
}

/** A folder holding the `source` file to download. */
async function servedDir(dir: string): Promise<string> {
  await mkdir(dir, { mode: 0o755 })
  await writeFile(join(dir, "source"), randomBytes(SIZE))
  return dir
}

await main()
