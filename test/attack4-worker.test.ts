// ATTACK4 (security review of worker mode): a repository URL whose last path segment is not valid
// percent-encoding made the directory derivation throw URIError: `exec --repo` failed with exit 1 and
// "URI malformed" instead of the usage error (exit 2) that names --repo-dir.
import t from 'tap';
import { parseRepoUrl, repoDirName } from '../image/worker.js';
import { workerPlan } from '../cli/worker.js';
import { UsageError } from '../cli/args.js';

t.test('ATTACK4 worker: a malformed percent-escape in the URL is a usage error, not a URIError', async (t) => {
  for (const url of ['https://git.example.org/team/a%zz', 'https://git.example.org/team/%E0%A4%A', 'https://git.example.org/%']) {
    t.throws(() => repoDirName(undefined, parseRepoUrl(url)), { code: 'ERR_WORKER_INPUT' }, `${url}: cannot derive a directory`);
    t.throws(() => workerPlan({ repo: url }, '/w'), UsageError, `${url}: a usage error`);
    t.same(workerPlan({ repo: url, 'repo-dir': 'x' }, '/w')?.path, '/w/x', 'with --repo-dir it works');
  }
  // decoded segments still cannot leave the workdir
  t.equal(repoDirName(undefined, parseRepoUrl('https://git.example.org/a/%2e%2e%2fetc')), 'etc');
  t.throws(() => repoDirName(undefined, parseRepoUrl('https://git.example.org/a/%2e%2e')), { code: 'ERR_WORKER_INPUT' });
});
