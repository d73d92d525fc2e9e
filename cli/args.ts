// Shared argument parsing for the commands: node's parseArgs, strict, with readable errors.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly code = 'ERR_USAGE';
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals, allowNegative: false });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\s*To specify .*$/s, ''));
  }
}

/** A whole number option within [min, max]. */
export function intOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${value}"`);
  }
  return Number(value);
}

/** A duration option in seconds (decimals allowed) within (0, max], returned in milliseconds. */
export function secondsOption(name: string, value: string | undefined, fallbackMs: number, max = 7 * 24 * 3600): number {
  if (value === undefined) return fallbackMs;
  const n = Number(value);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || n <= 0 || n > max) {
    throw new UsageError(`--${name} must be a number of seconds greater than 0, not "${value}"`);
  }
  return Math.round(n * 1000);
}

/** A size option in MiB (decimals allowed), at least `minBytes`; returned in bytes. */
export function mebibytesOption(name: string, value: string | undefined, fallbackBytes: number, minBytes: number): number {
  if (value === undefined) return fallbackBytes;
  const bytes = Math.round(Number(value) * 1024 * 1024);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || bytes < minBytes || bytes > 2 ** 40) {
    throw new UsageError(`--${name} must be a size in MiB of at least ${minBytes / 1024 / 1024}, not "${value}"`);
  }
  return bytes;
}
