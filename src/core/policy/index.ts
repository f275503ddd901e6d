/**
 * The policy core (DESIGN.md §6): pure, framework-free. The service's
 * `policy` module, the `policy-test` command and the SDK import from here.
 */
export * from './policy-types';
export { parseDuration, formatDuration } from './duration';
export {
  PolicyLoadError,
  loadPolicySet,
  loadPolicySetFromDir,
  policySetHash,
  type CompiledMatcher,
  type CompiledPrior,
  type CompiledRule,
  type PolicyProblem,
  type PolicySet,
  type PolicySource,
} from './policy-loader';
export {
  PolicyEngine,
  parseScopeKey,
  scopeKeyOf,
  type PolicyEngineOptions,
  type ScopeKey,
} from './policy-engine';
export { approvalOutcome, requiresApproval, type ApprovalOutcome } from './approval-outcome';
export { describeEvent } from './policy-message';
export {
  formatFixtureResult,
  loadFixturesFromDir,
  parseFixtureFile,
  runFixtureCase,
  type ExpectedViolation,
  type FixtureCase,
  type FixtureParseResult,
  type FixtureResult,
} from './policy-fixtures';
export { formatProblem, type SourceProblem } from './yaml-source';
