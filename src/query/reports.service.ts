import { Injectable } from '@nestjs/common';
import type { z } from 'zod';
import type { agentsReportQuerySchema, loopsReportQuerySchema, toolsReportQuerySchema } from './dto/query.dto';
import { ProjectorService } from './projector.service';
import { QueryRepository } from './query.repository';

const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;

/**
 * Reports over the read models. A tool call is a tool.call event; its
 * duration is its own duration_ms, else that of a tool.result of the same
 * tool in the same span; it failed when either has status error.
 * Percentiles are exact (percentile_cont's values over the calls in range).
 */
@Injectable()
export class ReportsService {
  constructor(
    private readonly repo: QueryRepository,
    private readonly projector: ProjectorService,
  ) {}

  async tools(tenant: string, q: z.infer<typeof toolsReportQuerySchema>) {
    await this.projector.catchUp(tenant);
    const { stats, slow } = await this.repo.toolReport(tenant, q, q.slowest * 4);
    return {
      tools: stats.map((s) => {
        const calls = Number(s.calls);
        const errors = Number(s.errors);
        // the slowest traces: each trace once, by its slowest call of this tool
        const seen = new Set<string>();
        const slowest = slow
          .filter((c) => c.tool === s.tool && !seen.has(c.trace_id) && seen.add(c.trace_id))
          .slice(0, q.slowest)
          .map((c) => ({ trace_id: c.trace_id, seq: Number(c.seq), duration_ms: c.duration_ms }));
        return {
          tool: s.tool,
          calls,
          errors,
          error_rate: calls ? errors / calls : 0,
          p50_ms: s.p?.[0] ?? null,
          p95_ms: s.p?.[1] ?? null,
          p99_ms: s.p?.[2] ?? null,
          slowest,
        };
      }),
    };
  }

  async loops(tenant: string, q: z.infer<typeof loopsReportQuerySchema>) {
    await this.projector.catchUp(tenant);
    const [repeated, heavy] = await Promise.all([
      this.repo.repeatedCalls(tenant, q, q.min_repeats, q.limit),
      this.repo.modelHeavyRuns(tenant, q, q.max_model_calls, q.limit),
    ]);
    return {
      min_repeats: q.min_repeats,
      max_model_calls: q.max_model_calls,
      repeated_calls: repeated.map((r) => ({
        trace_id: r.trace_id,
        tool: r.tool,
        args: r.args ?? null,
        count: Number(r.n),
        first_seq: Number(r.first_seq),
        last_seq: Number(r.last_seq),
      })),
      model_call_heavy: heavy.map((h) => ({ trace_id: h.trace_id, model_calls: Number(h.model_calls), agents: h.agents, status: h.status })),
    };
  }

  /**
   * Per agent: runs it took part in (a run with an event in the range),
   * failed runs (status failed), and policy violations it caused by severity.
   */
  async agents(tenant: string, q: z.infer<typeof agentsReportQuerySchema>) {
    await this.projector.catchUp(tenant);
    const [runs, violations] = await Promise.all([this.repo.agentRuns(tenant, q), this.repo.agentViolations(tenant, q)]);
    const byAgent = new Map<string, { runs: number; failed: number; violations: Record<(typeof SEVERITIES)[number], number> }>();
    const entry = (agent: string) => {
      let e = byAgent.get(agent);
      if (!e) byAgent.set(agent, (e = { runs: 0, failed: 0, violations: { low: 0, medium: 0, high: 0, critical: 0 } }));
      return e;
    };
    for (const r of runs) Object.assign(entry(r.agent), { runs: Number(r.runs), failed: Number(r.failed) });
    for (const v of violations) {
      if ((SEVERITIES as readonly string[]).includes(v.severity)) entry(v.agent).violations[v.severity as (typeof SEVERITIES)[number]] += Number(v.n);
    }
    return {
      agents: [...byAgent.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([agent, e]) => ({
          agent,
          runs: e.runs,
          failed_runs: e.failed,
          failure_rate: e.runs ? e.failed / e.runs : 0,
          violations: e.violations,
        })),
    };
  }
}
