import { parseArgs } from 'node:util';
import {
  PolicyLoadError,
  formatFixtureResult,
  formatProblem,
  loadFixturesFromDir,
  loadPolicySetFromDir,
  runFixtureCase,
  type PolicySet,
} from '../core/policy';

/**
 * `policy-test`: like `opa test`, for policy authors and CI. Loads the
 * policy set, runs every fixture case and prints one line per case.
 *
 *   node dist/src/cli/policy-test.js [--policies DIR] [--tests DIR] [--verbose]
 *
 * Exit status: 0 all passed, 1 a case failed, 2 the policies or fixtures
 * could not be loaded (every problem is printed with file:line:column).
 */

const USAGE = 'usage: policy-test [--policies DIR] [--tests DIR] [--verbose]\n';

async function main(argv: readonly string[]): Promise<number> {
  let options: { policies: string; tests: string; verbose: boolean };
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: {
        policies: { type: 'string', default: 'policies' },
        tests: { type: 'string', default: 'policies/tests' },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    options = { policies: values.policies, tests: values.tests, verbose: values.verbose };
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }

  let set: PolicySet;
  try {
    set = await loadPolicySetFromDir(options.policies);
  } catch (err) {
    if (!(err instanceof PolicyLoadError)) throw err;
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  process.stdout.write(`policy set ${set.hash} (${set.rules.length} rules from ${set.files.length} files)\n`);

  const fixtures = await loadFixturesFromDir(options.tests);
  if (fixtures.problems.length > 0) {
    process.stderr.write(`fixtures refused:\n${fixtures.problems.map((p) => `  ${formatProblem(p)}`).join('\n')}\n`);
    return 2;
  }
  if (fixtures.cases.length === 0) {
    process.stderr.write(`no fixture cases in ${options.tests}\n`);
    return 2;
  }

  let failed = 0;
  for (const fixture of fixtures.cases) {
    const result = runFixtureCase(set, fixture);
    if (!result.passed) failed += 1;
    process.stdout.write(`${formatFixtureResult(result)}\n`);
    if (options.verbose) {
      for (const e of result.celErrors) {
        process.stdout.write(`    note: ${e.ruleId} ${e.expression} at seq ${e.seq}: ${e.message}\n`);
      }
    }
  }
  const passed = fixtures.cases.length - failed;
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 2;
  },
);
