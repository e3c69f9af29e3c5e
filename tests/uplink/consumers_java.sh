#!/usr/bin/env bash
# The Java reader (uplink/consumers/java): Maven builds it into the build tree (flatc generates its
# FlatBuffers classes; the flatbuffers-java runtime is the version of the flatc on the PATH, which
# its generated code checks), runs its JUnit 5 tests on the shared vectors that
# uplink.vectors_write wrote, and writes the class path the e2e test runs the consumer example with
# (BUILD/consumers/java/classpath.txt).
#   tests/uplink/consumers_java.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
out=$build/consumers/java
command -v mvn >/dev/null || { echo "consumers_java: Maven is missing (toolchains/setup.sh installs it)" >&2; exit 1; }
flatbuffers=$(flatc --version | awk '{print $NF}')
rm -rf "$out/target/surefire-reports"
mvn -q -B -Dstyle.color=never -f "$src/uplink/consumers/java/pom.xml" -Dgw.build.dir="$out/target" \
  -Dflatbuffers.version="$flatbuffers" -Dgw.batch.vectors="$build/batch-vectors" \
  package dependency:build-classpath -Dmdep.outputFile="$out/classpath.txt" -Dmdep.includeScope=compile
tests=$(cat "$out"/target/surefire-reports/TEST-*.xml | grep -o '<testsuite [^>]*' | grep -o ' tests="[0-9]*"' |
  awk -F'"' '{ n += $2 } END { print n }')
echo "consumers_java: JUnit $tests tests passed (flatbuffers-java $flatbuffers), jar $(ls "$out"/target/*.jar)"
