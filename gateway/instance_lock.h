// One edge-gateway per buffer: two processes on one LMDB ring would both forward it upstream (each
// with its own uplink cursor view), and both answer for the devices' acknowledgements. The lock is
// flock() on <buffer path>/edge-gateway.lock, which the kernel drops with the process however it
// ends (a SIGKILL or a power cut leaves nothing stuck). The file holds the owner's pid, for the
// message a second process prints.
#pragma once

#include <expected>
#include <string>

namespace gw::gateway {

class InstanceLock {
 public:
  // Takes the lock on `dir` (created if missing) without waiting. The error names the directory and
  // the pid holding it.
  static std::expected<InstanceLock, std::string> acquire(const std::string& dir);

  InstanceLock(InstanceLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  InstanceLock& operator=(InstanceLock&& other) noexcept;
  InstanceLock(const InstanceLock&) = delete;
  InstanceLock& operator=(const InstanceLock&) = delete;
  ~InstanceLock();

 private:
  explicit InstanceLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace gw::gateway
