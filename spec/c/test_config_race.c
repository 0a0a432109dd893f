/* SPDX-License-Identifier: MIT */
/* test_config_race.c -- rs_config_option_names from several threads at
 * once, as two stores opened in parallel ask for it: the list is built
 * once and every caller sees it whole. Meant for ThreadSanitizer (a lazy
 * initialisation without synchronisation is a data race there); plain,
 * it checks that every thread gets the same complete list. */
#include <pthread.h>

#include "test_support.h"

#define THREADS 8

static pthread_barrier_t start;

static void *ask(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start);
    const char *const *names = rs_config_option_names();
    size_t n = 0;
    while (names[n]) n++;
    return (void *)n;
}

int main(void)
{
    pthread_t threads[THREADS];
    pthread_barrier_init(&start, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&threads[i], NULL, ask, NULL) == 0);
    size_t counts[THREADS];
    for (int i = 0; i < THREADS; i++) {
        void *n;
        pthread_join(threads[i], &n);
        counts[i] = (size_t)n;
    }
    pthread_barrier_destroy(&start);

    size_t expected = 0;
    const char *const *names = rs_config_option_names();
    while (names[expected]) expected++;
    CHECK(expected > 10);
    CHECK_STR(names[0], "url");
    for (int i = 0; i < THREADS; i++) CHECK(counts[i] == expected);
    printf("test_config_race: %d checks, %d failures\n", t_checks, t_failures);
    return t_failures ? 1 : 0;
}
