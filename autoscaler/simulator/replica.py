"""One simulated engine replica: FIFO chunked prefill, continuous-batch decode, paged KV.

Per tick the replica
1. prefills queued cohorts first-come-first-served, as far as free sequence slots and KV
   blocks allow (head-of-line blocking, as vLLM's scheduler), at the prefill rate a full
   chunk reaches next to the running decodes; members' first tokens land on a linear
   ramp (a FIFO server with evenly spaced arrivals), kept on the cohort;
2. advances every running sequence by the decode steps that fit in the tick (mixed
   steps while prefilling, pure decode steps otherwise): a shared decode clock `v`
   (tokens per sequence) makes this O(1) however many sequences run;
3. retires cohorts whose output is complete (recording their TTFT and end-to-end
   latency), and, when decode growth overflows the KV
   pool, preempts the youngest sequences back to the queue head to be recomputed.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from infleet.autoscaler.simulator.cohort import Cohort
from infleet.autoscaler.simulator.recorder import LatencyRecorder
from infleet.autoscaler.simulator.service_model import ReplicaModel


class SimReplica:
    __slots__ = (
        "busy",
        "finished",
        "generated",
        "heap",
        "model",
        "order",
        "preemptions",
        "prompted",
        "queue",
        "run_n",
        "s0",
        "seq",
        "server_free",
        "timeout_s",
        "v",
        "waiting",
    )

    def __init__(self, model: ReplicaModel, timeout_s: float = 60.0) -> None:
        self.model = model
        self.timeout_s = timeout_s  # clients give up on a request not started by then
        self.queue: deque[Cohort] = deque()
        self.heap: list[tuple[float, int, Cohort]] = []  # (decode clock at finish, seq, cohort)
        self.order: list[Cohort] = []  # running cohorts, oldest first (preemption takes the last)
        self.v = 0.0  # decode clock: tokens each running sequence has produced here
        self.run_n = 0
        self.s0 = 0.0  # KV tokens held = s0 + run_n * v
        self.server_free = float("-inf")
        self.waiting = 0
        self.preemptions = 0  # counters, as the engine exports them
        self.finished = 0
        self.prompted = 0.0  # prompt tokens prefilled (counted when the first token lands)
        self.generated = 0.0  # output tokens of finished requests
        self.busy = 0.0  # fraction of the last tick the GPU computed (what DCGM reports)
        self.seq = 0

    def enqueue(self, cohort: Cohort) -> None:
        self.queue.append(cohort)
        self.waiting += cohort.n

    def kv_usage(self) -> float:
        return (self.s0 + self.run_n * self.v) / self.model.kv_capacity_tokens

    def tick(self, t: float, dt: float, rec: LatencyRecorder) -> None:
        m = self.model
        end = t + dt
        batch = self.run_n
        # step_s(batch, chunk, kv), inlined: this is the simulator's innermost loop.
        memory = m.weights_s + m.kv_s_per_token * (self.s0 + batch * self.v)
        compute = m.prefill_s_per_token * batch
        decode_step = m.overhead_s + (memory if memory > compute else compute)
        chunk = m.max_num_batched_tokens - batch
        compute = m.prefill_s_per_token * (batch + chunk)
        mixed_step = m.overhead_s + (memory if memory > compute else compute)
        rate = chunk / mixed_step  # prefill tokens per second while prefilling
        tau = self.server_free if self.server_free > t else t
        seats = m.max_num_seqs - batch
        kv_free = m.kv_capacity_tokens - self.s0 - batch * self.v
        prefill_s = 0.0
        joined: list[Cohort] = []
        if self.queue and self.queue[0].a < t - self.timeout_s:
            self._abandon(t, rec)
        queue = self.queue
        while queue and seats > 0 and tau < end:
            c = queue[0]
            if c.r >= end:
                break
            fit = int(kv_free // c.p)
            if fit > c.n:
                fit = c.n
            if fit > seats:
                fit = seats
            if fit <= 0:
                break
            s, h = c.p / rate, c.h
            # Member i finishes at start + (i+1)s while backlogged (i < knee), then at
            # r + i*h + s once the server has caught up with arrivals.
            if h <= s:
                start, knee = (tau if tau > c.r else c.r), fit
            else:
                start = tau
                knee = min(fit, math.ceil((tau - c.r) / (h - s))) if tau > c.r else 0
            # Commit the members that start before the tick ends.
            k_a = math.ceil((end - start) / s)
            if k_a > knee:
                k_a = knee
            elif k_a < 0:
                k_a = 0
            k, last = k_a, start + k_a * s
            if k_a == knee and knee < fit:
                k = math.ceil((end - c.r) / h)
                if k > fit:
                    k = fit
                if k > knee:
                    last = c.r + (k - 1) * h + s
                else:
                    k = knee
            if k <= 0:
                break
            if k_a:
                head = c.split(k_a) if k_a < c.n else queue.popleft()
                if not head.ttft_done:
                    head.ttft0, head.ttft_step = start + s - head.a, s - head.g
                    head.first_token_at = start + (k_a + 1) * s / 2
                    self.prompted += k_a * head.p0
                joined.append(head)
            if k > k_a:
                tail = c.split(k - k_a) if k - k_a < c.n else queue.popleft()
                if not tail.ttft_done:
                    tail.ttft0, tail.ttft_step = tail.r + s - tail.a, tail.h - tail.g
                    tail.first_token_at = tail.r + s + (tail.n - 1) * tail.h / 2
                    self.prompted += (k - k_a) * tail.p0
                joined.append(tail)
            prefill_s += k * s
            tau = last
            seats -= k
            kv_free -= k * c.p
            self.waiting -= k
            if k < fit:
                break
        self.server_free = tau
        mixed = prefill_s if prefill_s < dt else dt
        if batch:
            self.v += mixed / mixed_step + (dt - mixed) / decode_step
            self.busy = 1.0
        else:
            self.busy = mixed / dt
        v = self.v
        heap, order = self.heap, self.order
        for c in joined:
            # Credit the decode steps since the middle member's first token.
            since = end - c.first_token_at
            c.v0 = v - 1.0 - since / decode_step if since > 0 else v - 1.0
            c.ttft_done = True
            self.run_n += c.n
            self.s0 += c.n * (c.p - c.v0)
            self.seq += 1
            heapq.heappush(heap, (c.v0 + c.o, self.seq, c))
            order.append(c)
        if heap and heap[0][0] <= v:
            self._retire(end, decode_step, rec)
        if self.s0 + self.run_n * v > m.kv_capacity_tokens:
            self._preempt(end)

    def _abandon(self, now: float, rec: LatencyRecorder) -> None:
        """Clients whose request has waited past the timeout without a first token
        disconnect (an engine aborts a request whose client is gone)."""
        deadline = now - self.timeout_s
        kept: deque[Cohort] = deque()
        for c in self.queue:
            late = 0
            if not c.ttft_done and c.a < deadline:
                late = c.n if c.g <= 0 else min(c.n, math.floor((deadline - c.a) / c.g) + 1)
            if late:
                rec.failed(c.a, late)
                self.waiting -= late
                if late < c.n:
                    c.split(late)
                    kept.append(c)
            else:
                kept.append(c)
        self.queue = kept

    def _retire(self, end: float, decode_step: float, rec: LatencyRecorder) -> None:
        heap, v = self.heap, self.v
        while heap and heap[0][0] <= v:
            finish_v, _, c = heapq.heappop(heap)
            if c.dead:
                continue
            c.dead = True
            # The middle member's decode time, applied to every member's TTFT.
            decode_s = end - (v - finish_v) * decode_step - c.first_token_at
            lo, hi = c.ttft0, c.ttft0 + (c.n - 1) * c.ttft_step
            rec.completed(c.a, lo, hi, lo + decode_s, hi + decode_s, c.n)
            self.finished += c.n
            self.generated += c.n * c.o0
            self.run_n -= c.n
            self.s0 -= c.n * (c.p - c.v0)
        if len(self.order) > 2 * len(heap) + 16:
            self.order = [c for c in self.order if not c.dead]

    def _preempt(self, now: float) -> None:
        """Recompute-style preemption of the youngest sequences until the KV pool fits."""
        cap = self.model.kv_capacity_tokens
        while self.order and self.s0 + self.run_n * self.v > cap:
            c = self.order.pop()
            if c.dead:
                continue
            held = c.p + (self.v - c.v0)  # KV tokens per member
            need = math.ceil((self.s0 + self.run_n * self.v - cap) / held)
            if need < c.n:
                out = c.split(need)
                out.v0 = c.v0
                self.order.append(c)
            else:
                out, c.dead = c, True
            self.run_n -= out.n
            self.s0 -= out.n * (out.p - out.v0)
            back = Cohort(out.a, out.g, now, 0.0, out.n, held, out.o - (self.v - out.v0))
            back.p0, back.o0, back.attempts, back.ttft_done = out.p0, out.o0, out.attempts, True
            back.ttft0, back.ttft_step = out.ttft0, out.ttft_step
            self.queue.appendleft(back)
            self.waiting += out.n
            self.preemptions += out.n

    def evacuate(self, now: float) -> list[Cohort]:
        """Every request this replica still holds, to be retried elsewhere (it is gone)."""
        lost = [c.retry(now) for c in self.queue]
        lost += [c.retry(now) for c in self.order if not c.dead]
        self.queue.clear()
        self.heap.clear()
        self.order.clear()
        self.run_n, self.s0, self.waiting = 0, 0.0, 0
        return lost
