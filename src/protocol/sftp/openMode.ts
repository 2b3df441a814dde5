import { OpenFlags } from "./constants.js"

/** fs.open-style mode strings and their SFTP pflags (the table ssh2's `stringToFlags` documents). */
const modes: ReadonlyArray<readonly [string, number]> = [
  ["r", OpenFlags.READ],
  ["r+", OpenFlags.READ | OpenFlags.WRITE],
  ["w", OpenFlags.TRUNC | OpenFlags.CREAT | OpenFlags.WRITE],
  ["wx", OpenFlags.TRUNC | OpenFlags.CREAT | OpenFlags.WRITE | OpenFlags.EXCL],
  ["w+", OpenFlags.TRUNC | OpenFlags.CREAT | OpenFlags.READ | OpenFlags.WRITE],
  ["wx+", OpenFlags.TRUNC | OpenFlags.CREAT | OpenFlags.READ | OpenFlags.WRITE | OpenFlags.EXCL],
  ["a", OpenFlags.APPEND | OpenFlags.CREAT | OpenFlags.WRITE],
  ["ax", OpenFlags.APPEND | OpenFlags.CREAT | OpenFlags.WRITE | OpenFlags.EXCL],
  ["a+", OpenFlags.APPEND | OpenFlags.CREAT | OpenFlags.READ | OpenFlags.WRITE],
  ["ax+", OpenFlags.APPEND | OpenFlags.CREAT | OpenFlags.READ | OpenFlags.WRITE | OpenFlags.EXCL]
]
const aliases: Readonly<Record<string, string>> = { xw: "wx", "xw+": "wx+", xa: "ax", "xa+": "ax+" }

/** "r", "w+", "ax", ... to pflags; undefined for a string fs.open would not accept. */
export function stringToFlags(mode: string): number | undefined {
  const name = aliases[mode] ?? mode
  return modes.find(([m]) => m === name)?.[1]
}

/** pflags back to the mode string; undefined for a combination no mode string produces. */
export function flagsToString(flags: number): string | undefined {
  return modes.find(([, f]) => f === flags)?.[0]
}
