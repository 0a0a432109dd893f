/* SPDX-License-Identifier: MIT */
/* clock.h -- monotonic time and sleeping (clock.c), for timeouts, backoff
 * and connection ages.
 */
#ifndef RS_CLOCK_H
#define RS_CLOCK_H

double rs_now(void);                 /* monotonic seconds */
void rs_sleep(double seconds);

#endif /* RS_CLOCK_H */
