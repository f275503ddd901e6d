import { Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { z } from 'zod';
import { NotFoundError } from '../common/problem';
import {
  approvalOutcome,
  parseScopeKey,
  requiresApproval,
  scopeKeyOf,
  type LedgerEventForPolicy,
} from '../core/policy';
import { LedgerService } from '../ledger/ledger.service';
import type {
  ApprovalItem,
  approvalsReportSchema,
  evaluateResultSchema,
  evaluateSchema,
  policySetSchema,
  violationListSchema,
  violationsQuerySchema,
  ViolationView,
} from './dto/policy.dto';
import { EvaluatorService } from './evaluator.service';
import { PolicySetStore } from './policy-set.store';
import { PolicyError } from './policy.errors';
import { PolicyRepository, type ViolationRow } from './policy.repository';
import type { ViolationRecord } from './violation-sink';

const MAX_SEQ = Number.MAX_SAFE_INTEGER;

function view(r: ViolationRow): ViolationView {
  return {
    id: r.id,
    rule_id: r.rule_id,
    severity: r.severity as ViolationView['severity'],
    kind: r.kind,
    policy_set_hash: r.policy_set_hash,
    seq: Number(r.seq),
    related_seqs: r.related_seqs.map(Number),
    trace_id: r.trace_id,
    session_id: r.session_id,
    agent: r.agent,
    message: r.message,
    retro: r.retro,
    status: r.status,
    ack_note: r.ack_note,
    ack_by: r.ack_by,
    ack_at: r.ack_at ? r.ack_at.toISOString() : null,
    ack_seq: r.ack_seq === null ? null : Number(r.ack_seq),
    ledger_seq: Number(r.ledger_seq),
    created_at: r.created_at.toISOString(),
  };
}

function recordView(r: ViolationRecord): ViolationView {
  return {
    ...r,
    trace_id: r.trace_id ?? '',
    severity: r.severity as ViolationView['severity'],
    status: 'open',
    ack_note: null,
    ack_by: null,
    ack_at: null,
    ack_seq: null,
  };
}

const encodeCursor = (ledgerSeq: number) => Buffer.from(`v1:${ledgerSeq}`).toString('base64url');

function decodeCursor(cursor: string): number {
  const m = /^v1:(\d{1,16})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw PolicyError.badCursor();
  return Number(m[1]);
}

/** The policy module's API: the set in force, violations, acknowledgements, the approvals report, retro-evaluation. */
@Injectable()
export class PolicyService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('PolicyService');
  private readonly onHangup = () => {
    this.reload().catch(() => undefined); // refused sets are logged by the store
  };

  constructor(
    private readonly store: PolicySetStore,
    private readonly evaluator: EvaluatorService,
    private readonly repo: PolicyRepository,
    private readonly ledger: LedgerService,
  ) {}

  async onModuleInit(): Promise<void> {
    try {
      await this.store.reload();
    } catch (err) {
      // The service still starts (ingest must not stop); the evaluator waits for a good set.
      this.logger.error(`no policy set in force at start: ${(err as Error).message}`);
    }
    process.on('SIGHUP', this.onHangup);
  }

  onModuleDestroy(): void {
    process.off('SIGHUP', this.onHangup);
  }

  describe(): z.infer<typeof policySetSchema> {
    const loaded = this.store.current;
    return {
      policy_set_hash: loaded?.set.hash ?? null,
      content_digest: loaded?.contentDigest ?? null,
      loaded_at: loaded?.loadedAt.toISOString() ?? null,
      dir: this.store.dir,
      files: loaded ? [...loaded.set.files] : [],
      evaluator: this.evaluator.enabled,
      rules: loaded ? loaded.set.rules.map((r) => ({ ...r.definition, file: r.file })) : [],
    };
  }

  async reload() {
    const { changed } = await this.store.reload();
    return { ...this.describe(), changed };
  }

  async violations(tenant: string, q: z.infer<typeof violationsQuerySchema>): Promise<z.infer<typeof violationListSchema>> {
    const rows = await this.repo.list(tenant, {
      ...q,
      beforeLedgerSeq: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit);
    return {
      violations: page.map(view),
      next_cursor: rows.length > q.limit ? encodeCursor(Number(page[page.length - 1].ledger_seq)) : null,
    };
  }

  /** The acknowledgement is a ledger entry; the row changes in its transaction. */
  async acknowledge(tenant: string, id: string, note: string, by: string): Promise<ViolationView> {
    const row = await this.repo.findViolation(tenant, id);
    if (!row) throw new NotFoundError(`violation ${id}`);
    if (row.status === 'acknowledged') throw PolicyError.alreadyAcknowledged(id);
    await this.ledger.appendServiceEvents(
      tenant,
      [
        {
          type: 'policy.violation_acknowledged',
          name: row.rule_id,
          trace_id: row.trace_id,
          session_id: row.session_id,
          attributes: {
            violation_id: id,
            rule: row.rule_id,
            seq: Number(row.seq),
            violation_seq: Number(row.ledger_seq),
            note,
            acknowledged_by: by,
          },
        },
      ],
      async (tx, receipts) => {
        if (!(await this.repo.acknowledge(tx, tenant, id, note, by, receipts[0].seq))) throw PolicyError.alreadyAcknowledged(id);
      },
    );
    return view((await this.repo.findViolation(tenant, id))!);
  }

  /** Every event a preceded_by rule governs in [from, to) by event time, with its approval outcome. */
  async approvals(tenant: string, from: string | undefined, to: string | undefined, limit: number): Promise<z.infer<typeof approvalsReportSchema>> {
    const loaded = this.store.current;
    if (!loaded) throw PolicyError.noPolicySet();
    const rules = loaded.set.rules.filter((r) => r.kind === 'preceded_by');
    const out = { policy_set_hash: loaded.set.hash, from: from ?? null, to: to ?? null, actions: [] as ApprovalItem[], truncated: false };
    if (!rules.length) return out;
    const types = rules.some((r) => r.match.types === undefined) ? null : [...new Set(rules.flatMap((r) => [...r.match.types!]))];
    const events = await this.repo.eventsByTime(tenant, types, from ?? null, to ?? null, limit + 1);
    const scopes = new Map<string, LedgerEventForPolicy[]>();
    const scopeEvents = async (key: string | undefined, action: LedgerEventForPolicy) => {
      if (key === undefined) return [action];
      let list = scopes.get(key);
      if (!list) {
        const { scope, id } = parseScopeKey(key);
        list = await this.repo.scopeEvents(tenant, scope === 'trace' ? 'trace_id' : 'session_id', id, MAX_SEQ);
        scopes.set(key, list);
      }
      return list;
    };
    for (const e of events) {
      for (const rule of rules) {
        if (!requiresApproval(rule, e)) continue;
        if (out.actions.length === limit) {
          out.truncated = true;
          return out;
        }
        const o = approvalOutcome(rule, e, await scopeEvents(scopeKeyOf(rule.scope, e), e));
        out.actions.push({
          rule_id: rule.id,
          seq: e.seq,
          trace_id: e.trace_id,
          session_id: e.session_id ?? null,
          agent: e.agent ?? null,
          type: e.type,
          name: e.name ?? null,
          time: e.time,
          outcome: o.status,
          approval_seq: o.status === 'approved' ? o.approvalSeq : null,
          approver: o.status === 'approved' || o.status === 'denied' ? o.approver : null,
          denial_seq: o.status === 'denied' ? o.denialSeq : null,
          blocked_seq: o.status === 'blocked' ? o.blockedSeq : null,
        });
      }
    }
    return out;
  }

  async evaluate(tenant: string, body: z.infer<typeof evaluateSchema>): Promise<z.infer<typeof evaluateResultSchema>> {
    const loaded = this.store.current;
    if (!loaded) throw PolicyError.noPolicySet();
    let fromSeq: number;
    let toSeq: number;
    if (body.from !== undefined || body.to !== undefined) {
      const range = await this.repo.seqRangeByTime(tenant, body.from ?? null, body.to ?? null);
      if (!range) return { policy_set_hash: loaded.set.hash, from_seq: 0, to_seq: 0, evaluated: 0, violations: [] };
      fromSeq = range.min;
      toSeq = range.max;
    } else {
      fromSeq = body.from_seq ?? 1;
      toSeq = body.to_seq ?? MAX_SEQ;
    }
    const result = await this.evaluator.retro(tenant, loaded, fromSeq, toSeq);
    return { ...result, violations: result.violations.map(recordView) };
  }
}
