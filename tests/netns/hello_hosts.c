/* Check for netns_mpirun.sh: each rank prints "rank R of N on HOSTNAME" (gethostname and
 * MPI_Get_processor_name must agree), then a 4 MiB MPI_Allreduce and a sendrecv ring, both
 * checked. Rank 0 prints how many distinct host names the job has and "OK" at the end.
 *   mpicc -O2 -o /tmp/hello_hosts tests/netns/hello_hosts.c
 *   tests/netns/netns_mpirun.sh -k 3 -n 4 -- /tmp/hello_hosts            */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COUNT (4 * 1024 * 1024 / (int)sizeof(int)) /* 4 MiB of ints */
#define NAME 256

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size, bad = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  char host[NAME] = {0}, proc[MPI_MAX_PROCESSOR_NAME] = {0};
  int len;
  gethostname(host, NAME - 1);
  MPI_Get_processor_name(proc, &len);
  printf("rank %d of %d on %s\n", rank, size, host);
  fflush(stdout);
  if (strcmp(host, proc) != 0) {
    fprintf(stderr, "rank %d: gethostname %s but MPI_Get_processor_name %s\n", rank, host, proc);
    bad = 1;
  }

  /* Allreduce: element i of rank r is r + i; the sum is size*i + size*(size-1)/2. */
  int *in = malloc(COUNT * sizeof(int)), *out = malloc(COUNT * sizeof(int));
  for (int i = 0; i < COUNT; ++i) in[i] = rank + i % 1000;
  MPI_Allreduce(in, out, COUNT, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < COUNT; ++i)
    if (out[i] != size * (i % 1000) + size * (size - 1) / 2) {
      fprintf(stderr, "rank %d: allreduce element %d is %d\n", rank, i, out[i]);
      bad = 1;
      break;
    }

  /* Ring: send 4 MiB to rank+1 and receive from rank-1, whose data is (rank-1) * 7 + i. */
  int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  for (int i = 0; i < COUNT; ++i) in[i] = rank * 7 + i;
  MPI_Sendrecv(in, COUNT, MPI_INT, next, 1, out, COUNT, MPI_INT, prev, 1, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
  for (int i = 0; i < COUNT; ++i)
    if (out[i] != prev * 7 + i) {
      fprintf(stderr, "rank %d: ring element %d is %d\n", rank, i, out[i]);
      bad = 1;
      break;
    }

  /* Distinct host names, counted on rank 0. */
  char *all = rank == 0 ? calloc((size_t)size, NAME) : NULL;
  MPI_Gather(host, NAME, MPI_CHAR, all, NAME, MPI_CHAR, 0, MPI_COMM_WORLD);
  int anybad = 0;
  MPI_Reduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    int distinct = 0;
    for (int r = 0; r < size; ++r) {
      int seen = 0;
      for (int q = 0; q < r; ++q) seen |= strcmp(all + r * NAME, all + q * NAME) == 0;
      distinct += !seen;
    }
    printf("%d ranks on %d hosts: %s\n", size, distinct, anybad ? "FAILED" : "OK");
    free(all);
  }
  free(in);
  free(out);
  MPI_Finalize();
  return (anybad || bad) ? 1 : 0;
}
