// One edge-gateway per buffer directory (gateway/instance_lock.h): a second holder is refused with
// the owner's pid, and a holder killed with SIGKILL leaves nothing stuck.
#include "tests/support/catch.h"

#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway/instance_lock.h"
#include "tests/support/support.h"

using gw::gateway::InstanceLock;

TEST_CASE("a second lock on the same buffer is refused and names the holder") {
  gw::test::TempDir dir;
  const std::string path = dir.path().string() + "/buffer";
  {
    auto first = InstanceLock::acquire(path);
    REQUIRE(first.has_value());
    auto second = InstanceLock::acquire(path);
    REQUIRE_FALSE(second.has_value());
    CHECK_THAT(second.error(), Catch::Contains("in use by another edge-gateway (pid " + std::to_string(getpid()) + ")"));
    CHECK_THAT(second.error(), Catch::Contains(path));
  }
  // Released with its holder.
  CHECK(InstanceLock::acquire(path).has_value());
}

TEST_CASE("a lock holder killed with SIGKILL leaves the lock free") {
  gw::test::TempDir dir;
  const std::string path = dir.path().string();
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto lock = InstanceLock::acquire(path);
    const char c = lock ? 'y' : 'n';
    (void)!write(ready[1], &c, 1);
    pause();  // until killed
    _exit(0);
  }
  close(ready[1]);
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  REQUIRE(c == 'y');
  auto held = InstanceLock::acquire(path);
  REQUIRE_FALSE(held.has_value());
  CHECK_THAT(held.error(), Catch::Contains("(pid " + std::to_string(child) + ")"));
  REQUIRE(kill(child, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(InstanceLock::acquire(path).has_value());
}
