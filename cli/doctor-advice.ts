// What doctor's answers from docker mean: for each failure, one line of cause and one line of fix.
// Pure (doctor.ts runs docker and prints).

export interface Advice {
  cause: string;
  fix: string;
}

/** The docker client could not be run or gave no version. */
export function clientAdvice(stderr: string): Advice {
  if (/ENOENT|not found|No such file/i.test(stderr)) {
    return {
      cause: 'the docker command is not installed (or not on PATH)',
      fix: 'install Docker: apt-get install docker.io (Debian/Ubuntu), or set CODEX_EGRESS_DOCKER to the docker binary',
    };
  }
  return { cause: `the docker client does not run: ${lastLine(stderr)}`, fix: 'reinstall Docker (apt-get install --reinstall docker.io)' };
}

/** The engine did not answer `docker version` (stderr), or answered with `engine`. */
export function engineAdvice(stderr: string, engine?: string): Advice | undefined {
  if (engine) {
    return engineRecentEnough(engine)
      ? undefined
      : {
          cause: `engine ${engine} is older than 20.10, which the appliance needs`,
          fix: 'upgrade the Docker engine to 20.10 or newer (apt-get install docker.io)',
        };
  }
  const max = /Maximum supported API version is ([0-9.]+)/i.exec(stderr)?.[1];
  if (max)
    return {
      cause: `the docker client is newer than the engine (which speaks API ${max} at most)`,
      fix: `export DOCKER_API_VERSION=${max}`,
    };
  if (/permission denied/i.test(stderr)) {
    return {
      cause: 'you may not use the Docker socket (permission denied)',
      fix: 'add yourself to the docker group (sudo usermod -aG docker $USER, then log in again), or run as root',
    };
  }
  if (/Cannot connect to the Docker daemon|Is the docker daemon running|connection refused|no such file/i.test(stderr)) {
    return {
      cause: 'the Docker engine is not running',
      fix: 'start it: sudo systemctl start docker (or, without systemd, sudo dockerd &)',
    };
  }
  return {
    cause: `the Docker engine did not answer: ${lastLine(stderr) || 'no output'}`,
    fix: 'check "docker info" and the engine\'s log',
  };
}

/** An appliance image is missing: it is built on first use, from `base`, which must then be there. */
export function imageAdvice(image: string, basePresent: boolean, base: string): Advice {
  return basePresent
    ? { cause: `${image} is not built yet`, fix: 'run "codex-egress build" (or let the first "up" build it)' }
    : {
        cause: `${image} is not built yet, and its base image ${base} is not on this machine`,
        fix: `docker pull ${base}, or build from a local image: codex-egress build --base IMAGE`,
      };
}

/** The base image the appliance images are built from is missing. */
export function baseAdvice(base: string): Advice {
  return {
    cause: `the base image ${base} is not on this machine: building the appliance images needs it`,
    fix: `docker pull ${base}, or name a local one: codex-egress build --base IMAGE (doctor --base IMAGE checks it)`,
  };
}

/** "20.10.24+dfsg1" → at least 20.10? */
export function engineRecentEnough(version: string): boolean {
  const [major = 0, minor = 0] = version.split(/[.+-]/).map(Number);
  return major > 20 || (major === 20 && minor >= 10);
}

function lastLine(s: string): string {
  return s.trim().split('\n').slice(-1)[0]?.trim().slice(0, 200) ?? '';
}
